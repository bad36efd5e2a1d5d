"""The Jozefowicz et al. (2015) comparison, as a command.

    python -m experiments.jozefowicz run --preset {smoke,quick,paper} [--tasks ...]
        [--archs ...] [--trials N] [--results FILE] [--set KEY=VALUE ...]
    python -m experiments.jozefowicz search --preset {smoke,quick,paper} [--results FILE]
        [--candidates N]
    python -m experiments.jozefowicz report FILE [--json]

`run` trains every trial of the preset, population by population (trials of a
task sharing an architecture and a depth train together in one compiled
program, their member axis spread over all devices), appends one JSON line per
finished trial to the results file and skips trials already there, so
rerunning the same command resumes; `--set` overrides a preset setting (the
pilots in docs/experiments.md were run this way). `search` runs the architecture
search (`experiments.jozefowicz.arch_search`, `recurrax.search`), logged to its
results file and resumed the same way. `report` prints the Markdown table of
a run with the paper's figures and the four findings' verdicts (`--json`: one
JSON object) and writes a plot beside the file, or, for a search log, the top
cells as equations beside LSTM, GRU and MUT1-3. Compiled programs are kept
on disk between runs (`use_compilation_cache`).
On several hosts, start the same command on each with `--coordinator HOST:PORT
--num-processes N --process-id I` and `--stall-seconds 0`
(`experiments.jozefowicz.multihost`, docs/experiments.md).
Every option is checked before anything loads or trains (argparse's
`error:`, exit status 2): `--trials` in [1, 10000], `--candidates` >= 1,
`--cpu-devices` in [1, 1024], `--stall-seconds` 0 (off) or at least 5; the
results file must be writable, a file (not a directory), and hold
records of its own command: a run's trials have `"kind": "trial"`, a search
log's records `"eval"` and `"score"`, and each command refuses the other's
file without writing to it. A record that cannot be written is kept and
written again (`experiments.cli.DurableResults`); the search log is written
a whole round or a whole stage's scores at a time, so a search killed at any
point resumes along the same path as one never killed.
As a last resort, if XLA CPU ever wedges while training, the command starts
itself again after `--stall-seconds` without CPU use and resumes; the number
of such restarts ends the run's output.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import jax

from experiments.cli import COUNT, STALL_SECONDS, DurableResults, Range, path_problem
from experiments.jozefowicz import (
    arch_search,
    harness_tasks,
    multihost,
    protocol,
    report,
    runner,
    watchdog,
)
from experiments.progress import progress_bar
from recurrax import search as search_lib
from recurrax.search.records import Evaluation, Score
from recurrax.train.results import ResultsFile

SEARCH_KINDS = (Evaluation.KIND, Score.KIND)
CPU_DEVICES = Range(int, 1, 1024)
TRIALS = Range(int, 1, 10_000)  # the paper ran 100 per cell; the plan holds every trial


def log_kind(records: list[dict], problems: list[str]) -> str:
    """What a results file holds: "empty", "run" (trials of `run`: kind
    "trial", or no kind and a "key", as files written before kinds),
    "search" (records of kind "eval" and "score"), "mixed", or "other" (no
    record of either, or lines that are not JSON objects at all)."""
    if not records:
        return "other" if len(problems) > 1 else "empty"  # one torn line: a killed first write
    kinds = set()
    for r in records:
        kind = r.get("kind")
        kinds.add("search" if kind in SEARCH_KINDS else
                  "run" if kind == protocol.TRIAL_KIND or (kind is None and "key" in r) else
                  "other")
    return kinds.pop() if len(kinds) == 1 else "mixed"


def results_problem(path: Path, command: str) -> str | None:
    """Why `command` ("run" or "search") cannot log to `path`, or None: not a
    writable file, or one holding another command's records. Reads, never writes."""
    if (problem := path_problem(path, directory=False)) is not None:
        return problem
    if not path.exists():
        return None
    try:
        kind = log_kind(*ResultsFile(path).read())
    except OSError as err:
        return f"{path} cannot be read ({err.strerror or err})"
    if kind in ("empty", command):
        return None
    own = {"run": "a run's results file (trials)", "search": "a search log"}[command]
    held = {"run": "a run's results file (records of kind 'trial')",
            "search": "a search log (records of kind 'eval' and 'score')",
            "mixed": "records of both a run and a search",
            "other": "no trials of a run and no search records"}[kind]
    return (f"{path} holds {held}, not {own}; it was left as it is. Pass --results with "
            f"another file" + (f" (`report {path}` prints it)" if kind in ("run", "search")
                               else ""))


def results_path(args) -> Path:
    """The results file of `run` or `search`: `--results`, else one per preset."""
    if args.results is not None:
        return Path(args.results).expanduser()
    prefix = "search-" if args.command == "search" else ""
    return Path("results/jozefowicz") / f"{prefix}{args.preset}.jsonl"


def run(args, on_stall=watchdog.abort) -> Path:
    preset = protocol.override(protocol.PRESETS[args.preset], args.set or [])
    path = results_path(args)
    if (problem := multihost.on_writer(results_problem, path, "run")) is not None:
        raise SystemExit(problem)
    results = multihost.writer_only(DurableResults(path))
    trials = protocol.plan(preset, args.tasks or preset.tasks, args.archs or preset.archs,
                           args.trials or preset.trials)
    records, problems = results.read()
    for p in problems:
        print(p)
    fp = protocol.fingerprint(preset)
    stale = sum(r.get("preset") == preset.name and r.get("preset_fingerprint") != fp
                for r in records)
    if stale:
        raise SystemExit(f"{results.path} holds {stale} trials of an older definition of the "
                         f"{preset.name!r} preset (fingerprint {fp} expected); move that file "
                         f"away or pass --results with a new file")
    done = {r["key"] for r in records}
    todo = [t for t in trials if t["key"] not in done]
    print(f"{len(trials)} trials, {len(trials) - len(todo)} already in {results.path}, "
          f"{len(todo)} to run on {len(jax.devices())} device(s)")
    mesh = runner.member_mesh()
    group = lambda t: (t["task"], t["arch"], t["layers"])
    setups: dict[str, harness_tasks.Setup] = {}
    best: dict[str, float] = {}
    stalls = watchdog.StallWatchdog(args.stall_seconds or None, on_stall)
    start = time.perf_counter()
    with progress_bar(len(todo), desc=f"jozefowicz {preset.name}") as bar:
        for (task, arch, layers), members in itertools.groupby(sorted(todo, key=group), key=group):
            members = list(members)
            if task not in setups:
                setups[task] = harness_tasks.prepare_for(preset, task)
            with stalls.armed():
                records = runner.run_population(setups[task], preset, arch, layers, members, mesh)
            for record in records:
                if jax.process_index() == 0:  # on several hosts, one writer
                    results.append(record)
                value: float | None = record["metrics"].get(f"test_{setups[task].metric}")
                if value is not None:
                    old = best.get(task, value)
                    best[task] = (max(old, value) if setups[task].higher_is_better
                                  else min(old, value))
            bar.update(len(members), **{t: f"{v:.3g}" for t, v in best.items()})
    stalls.close()
    print(f"ran {len(todo)} trials in {time.perf_counter() - start:.0f} s"
          f" ({watchdog.restarts()} restarts after XLA CPU stalls)")
    return results.path


def run_search(args, on_stall=watchdog.abort) -> str:
    preset = arch_search.PRESETS[args.preset]
    path = results_path(args)
    if (problem := results_problem(path, "search")) is not None:
        raise SystemExit(problem)
    # whole rounds and whole stages' scores: a killed search resumes on the same path
    results = DurableResults(path, batched=True)
    start, stalls = time.perf_counter(), watchdog.StallWatchdog(args.stall_seconds or None,
                                                                 on_stall)
    for p in search_lib.load(results).problems:
        print(p)

    def on_stage(stage: search_lib.Stage, ids: list[str], state: search_lib.State) -> None:
        rows = search_lib.table(state, arch_search.stages(preset), "gru")
        children = sum(e.origin == "child" for e in state.evals.values())
        best = next((r for r in rows if r.origin == "child"), None)
        print(f"[{time.perf_counter() - start:6.0f} s] {stage.name}: {len(ids)} trained; "
              f"{children} candidates so far, {sum(r.origin == 'child' for r in rows)} "
              f"through every stage, best fitness "
              f"{'—' if best is None else format(best.fitness, '.3f')}", flush=True)

    print(f"search {preset.name}: {preset.candidates} candidates, populations of "
          f"{preset.population}, stages {[s for s, _ in preset.stages]}; log {results.path}")
    with stalls.armed():
        state = arch_search.run(preset, results, on_stage, args.candidates)
    results.flush()
    stalls.close()
    print(f"done in {time.perf_counter() - start:.0f} s"
          f" ({watchdog.restarts()} restarts after XLA CPU stalls)")
    return arch_search.report(state, arch_search.stages(preset))


def report_any(path: Path, as_json: bool = False) -> str:
    """The report of a run's results file or of a search log; with `as_json`,
    a run's table and findings as one JSON object (and no plot). `SystemExit`
    with a message for a file that does not exist or holds neither."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{path} does not exist; pass a run's results file or a search log")
    if not path.is_file():
        raise SystemExit(f"{path} is not a file; pass a run's results file or a search log")
    records, problems = ResultsFile(path).read()
    if records and records[0].get("kind") in SEARCH_KINDS:
        if as_json:
            raise SystemExit(f"{path} is a search log; --json reports a run's results file")
        state = search_lib.load(ResultsFile(path))
        for p in state.problems:
            print(p, file=sys.stderr)
        # every evaluation is scored on the stages in order, so this is the stages' order
        names = dict.fromkeys(stage for scores in state.scores.values() for stage in scores)
        stages = [search_lib.Stage(n, 0.0, n != "words") for n in names]
        return arch_search.report(state, stages)
    if (kind := log_kind(records, problems)) in ("mixed", "other"):
        what = ("records of both a run and a search" if kind == "mixed" else
                "no trials of a run and is no search log")
        raise SystemExit(f"{path} holds {what} ({len(records)} JSON records, "
                         f"{len(problems)} unreadable lines); report reads one or the other")
    if as_json:
        return report.report_json(path)
    return report.report(path)


def use_compilation_cache() -> None:
    """Keep compiled programs on disk (`$RECURRAX_CACHE/jax`, by default
    ~/.cache/recurrax/jax), so a resumed, restarted or repeated run does not
    compile its populations' programs again."""
    from recurrax.tasks.cache import cache_root
    jax.config.update("jax_compilation_cache_dir", str(cache_root() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the trials of a preset (resumes)")
    r.add_argument("--preset", choices=sorted(protocol.PRESETS), default="quick")
    r.add_argument("--tasks", nargs="+", choices=protocol.TASKS)
    r.add_argument("--archs", nargs="+", choices=protocol.ARCHS)
    r.add_argument("--trials", type=TRIALS, help=f"per task and cell ({TRIALS.describe()})")
    r.add_argument("--results", type=Path,
                   help="the results file (default results/jozefowicz/PRESET.jsonl)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a preset setting, e.g. epochs=12 or "
                        "arithmetic.max_distractors=8 (repeatable)")
    r.add_argument("--cpu-devices", type=CPU_DEVICES, default=None,
                   help="split the CPU into this many devices, members sharded over them "
                        f"(default: one per usable core; {CPU_DEVICES.describe()})")
    r.add_argument("--stall-seconds", type=STALL_SECONDS, default=30.0,
                   help="restart (as a command) or stop (when called from Python) after this "
                        f"many seconds without CPU use while training ({STALL_SECONDS.describe()})")
    multihost.add_arguments(r)
    s = sub.add_parser("search", help="the architecture search (resumes)")
    s.add_argument("--preset", choices=sorted(arch_search.PRESETS), default="quick")
    s.add_argument("--results", type=Path,
                   help="the search log (default results/jozefowicz/search-PRESET.jsonl)")
    s.add_argument("--candidates", type=COUNT,
                   help=f"children to create (default: the preset's; {COUNT.describe()})")
    s.add_argument("--stall-seconds", type=STALL_SECONDS, default=60.0,
                   help=f"as for run ({STALL_SECONDS.describe()})")
    p = sub.add_parser("report", help="print the table of a results file or search log")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true",
                   help="print a run's table and findings as one JSON object (no plot)")
    args = parser.parse_args(argv)
    if args.command == "run":
        try:  # a bad --set is refused before anything loads
            protocol.override(protocol.PRESETS[args.preset], args.set or [])
        except ValueError as e:
            parser.error(str(e))
    if args.command == "run":  # join a job of several processes; set the devices
        multihost.initialize_from(args, parser)
        if jax.distributed.is_initialized():  # waiting for peers uses no CPU: not a stall,
            args.stall_seconds = 0              # and one process restarting alone can't rejoin
        if argv is None or args.cpu_devices is not None:
            runner.use_cpu_devices(args.cpu_devices)
    if args.command in ("run", "search"):  # before the first trial, without writing to it
        problem = multihost.on_writer(results_problem, results_path(args), args.command)
        if problem is not None:
            parser.error(f"argument --results: {problem}")
    elif not args.file.exists():
        parser.error(f"argument file: {args.file} does not exist")
    elif not args.file.is_file():
        parser.error(f"argument file: {args.file} is a directory, not a results file or a "
                     f"search log")
    # Process-wide JAX settings: as a command always; called from Python, only
    # the devices and only when asked for.
    if argv is None and args.command in ("run", "search"):
        from recurrax.tasks.cache import CacheError
        try:
            use_compilation_cache()
        except CacheError as e:
            parser.error(str(e))
    if args.command == "run":
        path = run(args, on_stall=watchdog.reexec if argv is None else watchdog.abort)
        if multihost.is_writer():
            print(report.report(path))
        print(f"\nXLA CPU stall restarts of this command: {watchdog.restarts()}")
    else:
        try:  # a log of another search or of none, no cell to mutate: the message, no trace
            if args.command == "search":
                print(run_search(args,
                                 on_stall=watchdog.reexec if argv is None else watchdog.abort))
            else:
                print(report_any(args.file, args.json))
        except search_lib.SearchError as e:
            raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
