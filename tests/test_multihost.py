"""A run spread over several processes (`experiments.jozefowicz.multihost`):
2 (and 4) processes on this machine, the coordinator on 127.0.0.1, gloo
collectives between their CPU devices, the member axis of every population
sharded across the processes. One process is killed mid-run and the job is
started again; the results file then holds every trial exactly once, with the
numbers of a single process run on as many devices, and only process 0 ever
opened it."""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments.jozefowicz import multihost
from recurrax.train.results import ResultsFile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ("lstm", "gru")
TRIALS = 2
# a tiny sweep: two populations (one per cell) of two trials, one short epoch each
TINY = ["--preset", "smoke", "--tasks", "arithmetic", "--archs", *ARCHS, "--trials", str(TRIALS),
        "--set", "epochs=1", "--set", "arithmetic.n_train=100", "--set", "arithmetic.n_valid=40",
        "--set", "arithmetic.n_test=40", "--set", "eval_batches=1",
        # a process waiting for its peers uses no CPU: no stall restarts in a job of several
        "--stall-seconds", "0"]
KEYS = sorted(f"smoke/arithmetic/{a}/{i}" for a in ARCHS for i in range(TRIALS))

# Runs `python -m experiments.jozefowicz ...` (argv after the code). On any
# process but 0, an audit hook stops the process (exit status 3, "TOUCHED" on
# stderr) the moment it opens, lists, creates, moves or deletes anything in
# the results folder.
LAUNCH = r"""
import os, runpy, sys
folder = os.path.abspath(os.environ["RESULTS_FOLDER"])
EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rename",
          "os.rmdir", "os.truncate", "os.chmod", "os.utime", "os.link", "os.symlink"}
def hook(event, args):
    if event in EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path == folder or path.startswith(folder + os.sep):
            os.write(2, f"TOUCHED {event} {path}\n".encode())
            os._exit(3)
if os.environ["JAX_PROCESS_ID"] != "0":
    sys.addaudithook(hook)
sys.argv = ["experiments.jozefowicz", *sys.argv[1:]]
runpy.run_module("experiments.jozefowicz", run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_job(results, processes: int, logs, attempt: str) -> list[subprocess.Popen]:
    """Every process of the job, each with one CPU device, a fresh coordinator port."""
    port = free_port()
    procs = []
    for i in range(processes):
        env = dict(os.environ, JAX_PLATFORMS="cpu", RESULTS_FOLDER=str(results.parent),
                   JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(i))
        log = open(logs / f"{attempt}-{i}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-c", LAUNCH, "run", *TINY, "--results",
                                       str(results), "--cpu-devices", "1"],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def log_tail(logs, attempt: str, processes: int) -> str:
    return "\n".join(f"--- process {i}:\n" + (logs / f"{attempt}-{i}.log").read_text()[-2000:]
                     for i in range(processes))


def numbers(record: dict) -> dict:
    """All of a record but its timing (and the size of the population it ran
    in, which a resumed, partly written population changes)."""
    return {k: v for k, v in record.items() if k not in ("seconds", "population")}


def start_single_process(tmp_path, devices: int) -> subprocess.Popen:
    """The same sweep in one process with `devices` CPU devices (the reference)."""
    (tmp_path / "single").mkdir()
    return subprocess.Popen([sys.executable, "-m", "experiments.jozefowicz", "run", *TINY,
                             "--results", str(tmp_path / "single" / "r.jsonl"),
                             "--cpu-devices", str(devices)],
                            cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def single_process_records(tmp_path, proc: subprocess.Popen) -> dict[str, dict]:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return {r["key"]: r for r in ResultsFile(tmp_path / "single" / "r.jsonl").read()[0]}


def killed_and_restarted(tmp_path, processes: int, victim: int) -> None:
    """The job, `victim` killed once the first population is written, then
    the job started again; checked against one process on as many devices."""
    results, logs = tmp_path / "multi" / "r.jsonl", tmp_path / "logs"
    results.parent.mkdir()
    logs.mkdir()
    reference = start_single_process(tmp_path, devices=processes)  # meanwhile, on a core
    procs = start_job(results, processes, logs, "first")
    deadline = time.time() + 240
    while (time.time() < deadline and all(p.poll() is None for p in procs)
           and not (results.exists() and results.read_text().count("\n") >= TRIALS)):
        time.sleep(0.05)
    os.kill(procs[victim].pid, signal.SIGKILL)
    time.sleep(1.0)  # the launcher tears the rest of the job down
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    first, _ = ResultsFile(results).read()
    assert TRIALS <= len(first) < len(KEYS), (
        f"the kill came too {'late' if first else 'early'}:\n"
        + log_tail(logs, "first", processes))

    procs = start_job(results, processes, logs, "again")
    try:
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0] * processes, log_tail(logs, "again", processes)
    for i in range(processes):
        for attempt in ("first", "again"):
            assert "TOUCHED" not in (logs / f"{attempt}-{i}.log").read_text()
    assert f"{processes} device(s)" in (logs / "again-0.log").read_text()

    records, _ = ResultsFile(results).read()
    assert sorted(r["key"] for r in records) == KEYS  # each trial exactly once
    assert records[:len(first)] == first  # the finished trials kept as they were
    single = single_process_records(tmp_path, reference)
    assert sorted(single) == KEYS
    for r in records:
        assert numbers(r) == numbers(single[r["key"]]), r["key"]
    assert (results.parent / "r.png").stat().st_size > 0  # process 0's report


def test_the_run_command_goes_through_the_multihost_hooks():
    """`run` joins a job (flags), reads and checks its results file on process 0
    only and prints the report there; the tests below rely on it."""
    source = open(os.path.join(ROOT, "experiments", "jozefowicz", "__main__.py")).read()
    for hook in ("multihost.add_arguments(r)", "multihost.initialize_from(args, parser)",
                 "multihost.on_writer(results_problem", "multihost.writer_only(",
                 "multihost.is_writer()"):
        assert hook in source, f"experiments/jozefowicz/__main__.py does not call {hook}"


@pytest.mark.slow  # 27 s; resuming after a kill: test_jozefowicz, test_train
def test_a_two_process_run_killed_and_restarted_equals_one_process(tmp_path):
    killed_and_restarted(tmp_path, processes=2, victim=1)


@pytest.mark.slow  # four processes on two cores: about a minute and a half
def test_a_four_process_run_killed_at_process_0_and_restarted_equals_one_process(tmp_path):
    killed_and_restarted(tmp_path, processes=4, victim=0)


def test_the_audit_hook_stops_a_process_that_opens_the_results_folder(tmp_path):
    """The positive control of the check above: process 1 opening the file exits 3."""
    (tmp_path / "r.jsonl").write_text("")
    code = LAUNCH.replace("runpy.run_module", "open(os.path.join(folder, 'r.jsonl')); print")
    out = subprocess.run([sys.executable, "-c", code], env=dict(
        os.environ, RESULTS_FOLDER=str(tmp_path), JAX_PROCESS_ID="1"),
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "TOUCHED open" in out.stderr


def flags(**given) -> argparse.Namespace:
    return argparse.Namespace(**{n: given.get(n) for n in multihost.ENVIRONMENT})


@pytest.mark.parametrize("given, environ, words", [
    (dict(coordinator="127.0.0.1:1234"), {},
     "--coordinator=127.0.0.1:1234 given without --num-processes (or $JAX_NUM_PROCESSES) "
     "and --process-id"),
    (dict(coordinator="127.0.0.1", num_processes="2", process_id="0"), {},
     "--coordinator: expected HOST:PORT with a port from 1 to 65535"),
    (dict(coordinator="host:70000", num_processes="2", process_id="0"), {}, "got 'host:70000'"),
    (dict(coordinator="h:1", num_processes="0", process_id="0"), {},
     "--num-processes: expected an integer >= 1, got '0'"),
    (dict(coordinator="h:1", num_processes="two", process_id="0"), {},
     "--num-processes: expected an integer >= 1, got 'two'"),
    (dict(coordinator="h:1", num_processes="2", process_id="-1"), {},
     "--process-id: expected an integer >= 0, got '-1'"),
    (dict(coordinator="h:1", num_processes="2", process_id="2"), {},
     "--process-id=2 is out of range for --num-processes=2: process ids run from 0 to 1"),
    ({}, {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "x"},
     "$JAX_PROCESS_ID: expected an integer >= 0, got 'x'"),
    ({}, {"JAX_PROCESS_ID": "1"}, "$JAX_PROCESS_ID=1 given without --coordinator"),
])
def test_bad_process_settings_are_refused_naming_the_flag(given, environ, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        multihost.settings(flags(**given), environ)


@pytest.mark.parametrize("given, words", [
    (("127.0.0.1", 2, 0), "coordinator: expected HOST:PORT with a port from 1 to 65535"),
    (("127.0.0.1:1", 2, 5), "process_id=5 is out of range for num_processes=2"),
    (("127.0.0.1:1", 2.0, 0), "num_processes: expected an integer >= 1, got '2.0'"),
    (("127.0.0.1:1", 2, True), "process_id: expected an integer >= 0, got 'True'")])
def test_initialize_refuses_bad_values_before_joining(given, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        multihost.initialize(*given)


def test_process_settings_come_from_the_flags_else_the_environment():
    environ = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:99", "JAX_NUM_PROCESSES": "4",
               "JAX_PROCESS_ID": "3"}
    assert multihost.settings(flags(), {}) is None  # a single process
    assert multihost.settings(flags(), environ) == ("10.0.0.1:99", 4, 3)
    assert multihost.settings(flags(process_id="1"), environ) == ("10.0.0.1:99", 4, 1)


def test_a_bad_process_flag_stops_the_command_before_anything_runs(tmp_path):
    """argparse's error (exit status 2), before JAX starts or the results file is made."""
    out = subprocess.run([sys.executable, "-m", "experiments.jozefowicz", "run", *TINY,
                          "--results", str(tmp_path / "r.jsonl"), "--coordinator",
                          "127.0.0.1:1", "--num-processes", "2", "--process-id", "5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--process-id=5 is out of range for --num-processes=2" in out.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_a_single_process_writes_and_reads_as_before(tmp_path):
    """Without a job of several processes the helpers are plain calls."""
    results = ResultsFile(tmp_path / "r.jsonl")
    assert multihost.writer_only(results) is results
    assert multihost.on_writer(lambda a, b: a + b, 2, b=3) == 5
    assert multihost.is_writer()


HELPERS = """
import json, sys
from experiments.jozefowicz import multihost
from recurrax.train.results import ResultsFile
multihost.initialize(sys.argv[1], 2, int(sys.argv[2]))
out = {"writer": multihost.is_writer()}
out["value"] = multihost.on_writer(lambda: {"read by": __import__("jax").process_index()})
try:
    multihost.on_writer(lambda: int("x"))
except ValueError as e:
    out["error"] = str(e)
results = multihost.writer_only(ResultsFile(sys.argv[3]))
results.append({"key": f"from {sys.argv[2]}"})
out["records"] = results.read()[0]
print(json.dumps(out))
"""


def test_process_0_reads_and_writes_and_every_process_gets_its_answer(tmp_path):
    """`on_writer`: process 0's value, or its error, on both processes;
    `writer_only`: only process 0's append lands, and both read it."""
    address = f"127.0.0.1:{free_port()}"
    path = tmp_path / "r.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", HELPERS, address, str(i), str(path)],
                              cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert [g["writer"] for g in got] == [True, False]
    assert all(g["value"] == {"read by": 0} for g in got)
    assert got[0]["error"] == "invalid literal for int() with base 10: 'x'"
    assert got[1]["error"] == "on process 0: invalid literal for int() with base 10: 'x'"
    assert all(g["records"] == [{"key": "from 0"}] for g in got)
    assert ResultsFile(path).read()[0] == [{"key": "from 0"}]


ORDER = """
import sys, jax
from experiments.jozefowicz import multihost
if sys.argv[1] == "after-jax":
    jax.numpy.zeros(1)
else:
    multihost.initialize(sys.argv[2], 1, 0)
try:
    multihost.initialize(sys.argv[2], 1, 0)
except ValueError as e:
    print(e)
"""


@pytest.mark.parametrize("case, words", [
    ("after-jax", "JAX's devices are in use already in this process; call initialize"),
    ("twice", "jax.distributed.initialize() has run already in this process; drop "
              "--coordinator, --num-processes and --process-id")])
def test_joining_a_job_late_or_twice_is_refused_with_the_fix(case, words):
    out = subprocess.run([sys.executable, "-c", ORDER, case, f"127.0.0.1:{free_port()}"],
                         cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert words in out.stdout
