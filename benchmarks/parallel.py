r"""The sequential scan against the parallel-in-time evaluators, in one process:
speed, Newton iterations, compile time and compiled memory.

    python -m benchmarks.parallel [--tiny] [--out results/bench/parallel.jsonl]
        [--cells lstm,gru,mingru] [--steps 1000,10000] [--hidden 8,64,256] [--batch 1,16]
        [--methods quasi-deer,deer,quasi-elk,elk] [--passes forward,forward+backward]
        [--weights init] [--budget S] [--memory-cap-gib G]
    python -m benchmarks.parallel --report results/bench/parallel.jsonl [--run-id ID]

For each cell, weights, T, H and B (input size D = max(1, H/2), inputs
x_t ~ N(0, 1), float32, the initial carry zero) and each pass — `forward`
(the final carry and ys) and `forward+backward` (`jax.grad` of Σ ys² with
respect to the params) — every implementation is compiled
(`jit(f).lower(...).compile()`, timed: `compile_s`) and run once, then all
are timed round-robin (`timing.interleaved_medians`) so that the ratio
`sequential / parallel` compares calls made in the same process, minutes
apart at most:

- `sequential`: `recurrax.scan`, T dependent steps;
- each `--methods` entry: `recurrax.parallel.solve(method=...)` forward and
  the gradient of `recurrax.parallel.scan` (implicit differentiation);
- `linear` (minGRU only): `recurrax.parallel.scan` on the cell as it is,
  which solves its linear recurrence exactly by one associative scan. The
  Newton methods run on minGRU with `linear` removed, for comparison.

Each record has the median seconds per call, `speedup` = sequential /
this (> 1: parallel is faster), the Newton `iterations` the forward solve
took, its scaled `residual`, `converged` and `parallel` (False: it fell back
to the sequential loop, `on_failure="sequential"`, so its time includes the
failed iterations and the loop), `compile_s`, `temp_bytes` (the compiled
program's `memory_analysis`, `benchmarks.compile_memory.memory_stats`, null
where the backend has none) and `lyapunov`, the largest Lyapunov exponent of
the recurrence over the first min(T, 1000) steps of the same inputs
(`recurrax.metrics.lyapunov`; mean over the rows, and `lyapunov_max`):
negative, the recurrence forgets and the iterations converge fast.

Weights (`--weights`): `init`, the cell's own initialisation (strongly
contracting: λ̂ ≈ −0.45 for lstm and gru); `long-memory`, trained-like: the
gates that keep the state biased to keep about 95% of it (lstm b_f + 3, gru
b_z + 3, mingru b_z − 3), λ̂ closer to 0, as after training on a long-memory
task, so more iterations; `contracting`, the recurrent kernels (`W_h*`)
scaled by 0.5; `expanding`, scaled by 3 (λ̂ near or above 0: the iterations
may fail and fall back).

Skipped, with a record giving the reason: a Newton method whose iteration
is estimated larger than `--max-work` (`estimated_work`: T·B·N² Jacobian
entries, ·N for the dense methods; on this project's 2-core CPU quasi-DEER
took 1.4 s for 12 iterations of gru T = 10k, H = 64, B = 1, 4e7 entries
each); an implementation whose estimated largest array (`"deer"`/`"elk"`:
the T·B·N² Jacobian floats, N the carry width; the others T·B·N) or
compiled temporary memory exceeds `--memory-cap-gib` (the sequential
reference always runs); one whose first call shows that its timing rounds
would not fit the rest of `--budget`; everything once `--budget` seconds
have passed (no new measurement starts). The cases run in the order of
`--steps` (then cells, weights, hidden, batch), so with T ascending a
budget cut keeps the short sequences of every cell.

Output: one JSON line per record through `recurrax.train.ResultsFile`
(appended and flushed as it goes), and at the end the Markdown table
(`table`; printed and written to `<out stem>.md`).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import math
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

import recurrax
from benchmarks.compile_memory import memory_stats
from benchmarks.scan import Recorder, _list, versions
from benchmarks.timing import block, interleaved_medians, median
from recurrax import parallel
from recurrax.metrics.lyapunov import largest_lyapunov_exponent
from recurrax.train.results import ResultsFile

CELLS = ("lstm", "gru", "mingru")
METHODS = ("quasi-deer", "deer", "quasi-elk", "elk")
PASSES = ("forward", "forward+backward")
LYAPUNOV_STEPS = 1000

#: How each `--weights` setting changes the cell's initial params: the
#: recurrent kernels' scale, and a bias added to the gate that keeps the state.
WEIGHTS: dict[str, tuple[float, float]] = {
    "init": (1.0, 0.0), "long-memory": (1.0, 3.0), "contracting": (0.5, 0.0),
    "expanding": (3.0, 0.0)}
#: The gate bias that keeps the state, and the sign that makes it keep more
#: (mingru: h' = (1 − z) h + z h̃, so a lower b_z keeps more).
KEEP_BIAS = {"lstm": ("b_f", 1.0), "gru": ("b_z", 1.0), "mingru": ("b_z", -1.0)}

PRESETS = {
    "full": dict(steps=[1000, 10000, 100000], hidden=[8, 64, 256], batch=[1, 16], rounds=3,
                 warmup=1),
    "tiny": dict(steps=[16], hidden=[4], batch=[1, 2], rounds=1, warmup=0),
}


def weights(cell_name: str, params: dict, setting: str) -> dict:
    """The params of `--weights setting` (module docstring) from the cell's own."""
    scale, bias = WEIGHTS[setting]
    name, sign = KEEP_BIAS[cell_name]
    out = {k: v * scale if k.startswith("W_h") else v for k, v in params.items()}
    if name in out:
        out[name] = out[name] + sign * bias
    return out


def carry_width(cell_name: str, H: int) -> int:
    return 2 * H if cell_name == "lstm" else H


def estimated_bytes(cell_name: str, method: str, T: int, H: int, B: int) -> int:
    """The largest array a run holds, float32: T·B·N² Jacobian entries for
    the dense methods, T·B·N carry entries otherwise (N the carry width)."""
    N = carry_width(cell_name, H)
    dense = method in ("deer", "elk")
    return 4 * T * B * N * (N if dense else 1)


def estimated_work(cell_name: str, method: str, T: int, H: int, B: int) -> int:
    """The size of one Newton iteration: every method forms each step's full
    Jacobian (`jacfwd`, N forward passes; the quasi methods keep its
    diagonal), T·B·N² entries, and the dense ones (`"deer"`, `"elk"`) then
    multiply N × N matrices in their associative scan, T·B·N³. 0 for the
    sequential loop and the exact linear scan."""
    if method in ("sequential", "linear"):
        return 0
    N = carry_width(cell_name, H)
    return T * B * N * N * (N if method in ("deer", "elk") else 1)


def problem(cell_name: str, setting: str, T: int, H: int, B: int):
    """(cell, params, xs): the cell, its `--weights` params and N(0, 1) inputs."""
    D = max(1, H // 2)
    cell = recurrax.cells.get(cell_name, H)
    params = weights(cell_name, cell.init(jax.random.key(0), D), setting)
    xs = jax.random.normal(jax.random.key(1), (T, B, D), jnp.float32)
    return cell, params, xs


def functions(cell, method: str, backward: bool) -> tuple[Callable, dict]:
    """`f(params, xs)` for one implementation, and a dict the forward solve
    fills with the method it used while being traced (`Info.method` is a
    string, so it cannot leave `jit`)."""
    used: dict[str, str] = {}
    target = cell if method == "linear" else cell._replace(linear=None)
    newton = "quasi-deer" if method == "linear" else method

    def evaluate(params, xs):
        if method == "sequential":
            return recurrax.scan(cell, params, xs)
        carry, ys, info = parallel.solve(target, params, xs, method=newton)
        used["method"] = info.method
        return carry, ys, (info.iterations, info.residual, info.converged, info.parallel)

    if not backward:
        return evaluate, used

    def loss(params, xs):
        return jnp.sum(evaluate(params, xs)[1] ** 2)

    return jax.grad(loss), used


def build(cell, params, xs, method: str, backward: bool) -> dict:
    """Compile one implementation; its thunk, compile seconds and memory."""
    fn, used = functions(cell, method, backward)
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(params, xs).compile()
    compile_s = time.perf_counter() - start
    return {"thunk": lambda: compiled(params, xs), "compile_s": compile_s, "used": used,
            "memory": memory_stats(compiled)}


def iteration_fields(out, used: dict) -> dict:
    """What a forward solve's `Info` says, as plain numbers."""
    if not isinstance(out, tuple) or len(out) != 3:
        return {}
    iterations, residual, converged, parallel_ = (jax.device_get(a) for a in out[2])
    return {"iterations": int(iterations), "residual": float(residual),
            "converged": bool(converged), "parallel": bool(parallel_),
            "method_used": used.get("method")}


def implementations(cell_name: str, args) -> list[str]:
    return ["sequential", *args.methods, *(["linear"] if cell_name == "mingru" else [])]


def measure(rec: Recorder, case: tuple, pass_: str, args) -> None:
    """Compile, run once and time every implementation of one case (`problem`'s
    cell, params and inputs, and the record fields they share) and pass;
    write one record each (or a skip record)."""
    backward = pass_ == "forward+backward"
    (cell, params, xs), base = case
    cell_name, T, H, B = base["cell"], base["T"], base["H"], base["B"]
    base = {**base, "pass": pass_}
    cap = args.memory_cap_gib * 2**30
    built, first, extra = {}, {}, {}
    for impl in implementations(cell_name, args):
        reason = None
        est = estimated_bytes(cell_name, impl, T, H, B) if impl != "sequential" else 0
        work = estimated_work(cell_name, impl, T, H, B)
        if est > cap:
            floats = "T·B·N²" if impl in ("deer", "elk") else "T·B·N"
            reason = f"estimated {_bytes(est)} ({floats} floats) over the {_bytes(cap)} cap"
        elif work > args.max_work:
            size = "T·B·N³" if impl in ("deer", "elk") else "T·B·N²"
            reason = f"{work:.2g} ({size}) per iteration over --max-work {args.max_work:.2g}"
        elif rec.over_budget("parallel"):
            return
        if reason is None:
            try:
                b = build(cell, params, xs, impl, backward)
                temp = b["memory"].get("temp_bytes")
                if temp is not None and temp > cap and impl != "sequential":
                    reason = f"compiled temporary memory {_bytes(temp)} over the {_bytes(cap)} cap"
                    extra[impl] = {"temp_bytes": temp}
                else:
                    start = time.perf_counter()
                    out = b["thunk"]()
                    block(out)
                    first[impl] = time.perf_counter() - start
                    extra[impl] = iteration_fields(out, b["used"])
                    left = rec.budget - (time.perf_counter() - rec.start) if rec.budget else None
                    calls = args.rounds + args.warmup + 1
                    if left is not None and first[impl] * calls > left:
                        reason = (f"one call took {first[impl]:.1f} s; {calls} more do not fit "
                                  f"the {max(left, 0):.0f} s left of the budget")
                    else:
                        built[impl] = b
            except Exception as err:  # a method that fails is recorded, not fatal
                reason = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
        if reason is not None:
            rec.write({"kind": "skip", "impl": impl, **base, "reason": reason,
                       **extra.get(impl, {})})
    if not built:
        return
    times = interleaved_medians({k: b["thunk"] for k, b in built.items()}, rounds=args.rounds,
                                warmup=args.warmup, min_time=args.min_sample_ms / 1e3)
    med = {impl: median(ts) for impl, ts in times.items()}
    for impl, t in med.items():
        b = built[impl]
        rec.write({"kind": "parallel", "impl": impl, **base, "seconds": t,
                   "speedup": round(med["sequential"] / t, 4) if "sequential" in med else None,
                   "first_call_s": round(first[impl], 4), "compile_s": round(b["compile_s"], 3),
                   "temp_bytes": b["memory"].get("temp_bytes"), **extra[impl],
                   "rounds": args.rounds, "samples": [round(x, 7) for x in times[impl]]})
    print(f"{cell_name} {base['weights']} T={T} H={H} B={B} {pass_} (λ̂ {base['lyapunov']:+.3f}): "
          + ", ".join(f"{i} {_ms(t)}" + (f" ({extra[i]['iterations']} it)"
                                         if "iterations" in extra[i] else "")
                      for i, t in med.items()), flush=True)


def run(rec: Recorder, args) -> None:
    for T, cell_name, setting, H, B in itertools.product(args.steps, args.cells, args.weights,
                                                         args.hidden, args.batch):
        if rec.over_budget("parallel"):
            return
        cell, params, xs = problem(cell_name, setting, T, H, B)
        lyap = largest_lyapunov_exponent(cell, params, xs, steps=LYAPUNOV_STEPS)
        base = {"cell": cell_name, "weights": setting, "T": T, "H": H, "B": B,
                "D": xs.shape[-1], "dtype": "float32",
                "lyapunov": round(float(jnp.mean(lyap)), 5),
                "lyapunov_max": round(float(jnp.max(lyap)), 5)}
        for pass_ in args.passes:
            measure(rec, ((cell, params, xs), base), pass_, args)


def _short(reason: str) -> str:
    """A skip reason in a table cell: `memory`, `work cap`, `budget` or `failed`."""
    if "--max-work" in reason:
        return "work cap"
    if "cap" in reason:
        return "memory"
    return "failed" if reason.startswith("failed") else "budget"


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} GiB"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def table(records: list[dict]) -> str:
    """A Markdown table of the measurements (and skips) in `records`: one row
    per cell, weights, T, H, B and pass; the sequential time, then for each
    parallel implementation its time, `×speedup` (sequential / it; > 1:
    faster) and iterations, `fallback` where it did not converge, or `–`
    with why it was skipped (`_short`; the records have the whole reason)."""
    impls = [i for i in ("sequential", *METHODS, "linear")
             if any(r.get("impl") == i for r in records)]
    keys: dict[tuple, dict[str, dict]] = {}
    for r in records:
        if r.get("kind") in ("parallel", "skip") and "T" in r:
            key = (r["cell"], r["weights"], r["T"], r["H"], r["B"], r["pass"], r["lyapunov"])
            keys.setdefault(key, {})[r["impl"]] = r
    lines = ["| cell | weights | T | H | B | pass | λ̂ | " + " | ".join(impls) + " |",
             "| --- | --- | --: | --: | --: | --- | --: | " + " | ".join("--:" for _ in impls)
             + " |"]
    for key, row in keys.items():
        cells = []
        for impl in impls:
            r = row.get(impl)
            if r is None:
                cells.append("")
            elif r["kind"] == "skip":
                cells.append(f"– ({_short(r['reason'])})")
            elif impl == "sequential":
                cells.append(_ms(r["seconds"]))
            else:
                text = f"{_ms(r['seconds'])} ×{r['speedup']:.2g}"
                if "iterations" in r and impl != "linear":
                    text += f", {r['iterations']} it"
                if r.get("parallel") is False:
                    text += ", fallback"
                cells.append(text)
        cell, setting, T, H, B, pass_, lyap = key
        pass_ = "fwd" if pass_ == "forward" else "fwd+bwd"
        lines.append(f"| {cell} | {setting} | {T} | {H} | {B} | {pass_} | {lyap:+.2f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(path: Path, run_id: str | None = None) -> str:
    """The table of `path`'s records (of run `run_id`, default the last run),
    written to `<stem>.md`; returns it."""
    records, _ = ResultsFile(path).read()
    runs = [r["run_id"] for r in records if "run_id" in r]
    run_id = run_id or (runs[-1] if runs else None)
    text = table([r for r in records if r.get("run_id") == run_id])
    path.with_suffix(".md").write_text(text + "\n")
    return text


def meta(args, argv) -> dict:
    return {"kind": "meta", "argv": list(argv), "preset": args.preset,
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "devices": [str(d) for d in jax.devices()], "versions": versions()}


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", dest="preset", action="store_const", const="tiny", default="full")
    p.add_argument("--out", type=Path, default=Path("results/bench/parallel.jsonl"))
    p.add_argument("--cells", type=_list(), default=list(CELLS))
    p.add_argument("--methods", type=_list(), default=list(METHODS))
    p.add_argument("--passes", type=_list(), default=list(PASSES))
    p.add_argument("--weights", type=_list(), default=["init"])
    for name in ("steps", "hidden", "batch"):  # default: the preset's
        p.add_argument(f"--{name}", type=_list(int), help="comma-separated ints")
    p.add_argument("--rounds", type=int, help="timed rounds (default: the preset's)")
    p.add_argument("--warmup", type=int, help="untimed calls first (default: the preset's)")
    p.add_argument("--min-sample-ms", type=float, default=20.0,
                   help="repeat calls shorter than this within one sample")
    p.add_argument("--memory-cap-gib", type=float, default=4.0,
                   help="skip an implementation whose largest array or compiled temporary "
                        "memory is estimated above this")
    p.add_argument("--max-work", type=float, default=3e8,
                   help="skip a Newton method whose iteration is larger than this "
                        "(estimated_work: T·B·N², T·B·N³ for deer/elk; the default fits "
                        "a few seconds a call on 2 CPU cores)")
    p.add_argument("--budget", type=float, default=None, help="seconds; then stop starting")
    p.add_argument("--run-id", default=None)
    p.add_argument("--no-report", action="store_true", help="measure only; no table")
    p.add_argument("--report", type=Path, default=None,
                   help="measure nothing: print the table of this JSONL file's run "
                        "(--run-id, default its last) and write it to <stem>.md")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name, allowed in (("cells", CELLS), ("methods", METHODS), ("passes", PASSES),
                          ("weights", WEIGHTS)):
        bad = set(getattr(args, name)) - set(allowed)
        if bad:
            p.error(f"--{name}: unknown {sorted(bad)}; known: {', '.join(allowed)}")
    for name in ("steps", "hidden", "batch"):
        if not getattr(args, name) or min(getattr(args, name)) < 1:
            p.error(f"--{name}: expected positive ints, got {getattr(args, name)}")
    if args.rounds < 1 or args.warmup < 0 or not math.isfinite(args.memory_cap_gib) or not (
            args.max_work > 0):
        p.error("--rounds must be >= 1, --warmup >= 0, --memory-cap-gib finite and "
                "--max-work > 0")
    return args


def main(argv=None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.report is not None:
        text = report(args.report, args.run_id)
        print(text)
        return text
    run_id = args.run_id or f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    rec = Recorder(args.out, run_id, args.budget)
    rec.write(meta(args, argv))
    print(f"run {run_id} on {rec.common['device']}; writing {args.out}", flush=True)
    run(rec, args)
    print(f"measured in {time.perf_counter() - rec.start:.0f} s", flush=True)
    if args.no_report:
        return ""
    text = report(args.out, run_id)
    print(text)
    print(f"wrote {args.out.with_suffix('.md')}", flush=True)
    return text


if __name__ == "__main__":
    main()
