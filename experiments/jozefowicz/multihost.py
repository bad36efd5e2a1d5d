"""One run over several processes (hosts): every process's devices join one
global mesh, each population's member axis is sharded over all of them, and
process 0 alone reads and writes the results file.

Start the same command on every host, `I` = 0 … N−1 (process 0's host runs the
coordinator, at a free port of its choosing):

    python -m experiments.jozefowicz run --preset paper --stall-seconds 0 \\
        --coordinator HOST:PORT --num-processes N --process-id I

(or set `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`).
Keep the stall watchdog off (`--stall-seconds 0`): a process waiting for its
peers uses no CPU, and a process restarted alone cannot rejoin the job.
From Python, call `initialize("HOST:PORT", N, I)` (or
`jax.distributed.initialize(...)`) before anything else uses JAX, then
`experiments.jozefowicz.__main__.main([...])`.

Every process plans the same trials, builds the same populations from the same
seeds and reads the same batches; each trains the members on its own devices
(`recurrax.train.population.shard_members`), and the scores are gathered to
every process (`population.to_host`). Process 0 reads the results file and
hands its records to the others (`writer_only`, `on_writer`), so every process
skips the same finished trials; only process 0 appends, and the other
processes never open the file (on separate hosts it need not exist there). A
run killed on any host is restarted as a whole job: the finished trials are in
process 0's file, and the job resumes after them.

On CPU the processes exchange data with gloo
(`jax_cpu_collectives_implementation`).
`tests/test_multihost.py` runs 2 (and 4) processes on one machine this way.
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import jax
import numpy as np
from jax.experimental import multihost_utils

from recurrax.train.results import ResultsFile

ENVIRONMENT = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
               "process_id": "JAX_PROCESS_ID"}
T = TypeVar("T")
R = TypeVar("R", bound=ResultsFile)
FLAGS = {"coordinator": "--coordinator", "num_processes": "--num-processes",
         "process_id": "--process-id"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--coordinator HOST:PORT`, `--num-processes N`, `--process-id I` (each
    defaulting to its environment variable, `ENVIRONMENT`); checked by
    `initialize_from`."""
    group = parser.add_argument_group("several processes (hosts); see "
                                      "experiments/jozefowicz/multihost.py")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0's coordinator, the same on every process "
                            f"(default: ${ENVIRONMENT['coordinator']})")
    group.add_argument("--num-processes", metavar="N",
                       help=f"processes in the job (default: ${ENVIRONMENT['num_processes']})")
    group.add_argument("--process-id", metavar="I",
                       help="this process, 0 to N-1; 0 writes the results "
                            f"(default: ${ENVIRONMENT['process_id']})")


def settings(args: argparse.Namespace | None = None,
             environ: dict[str, str] | None = None) -> tuple[str, int, int] | None:
    """`(coordinator, num_processes, process_id)` from the flags, else from
    the environment, or `None` when neither names a coordinator (one
    process). Raises `ValueError` naming the flag or variable on a bad value
    or a missing one."""
    environ = dict(os.environ) if environ is None else environ
    given: dict[str, tuple[str, str]] = {}  # name -> (where, text)
    for name, var in ENVIRONMENT.items():
        flag = None if args is None else getattr(args, name, None)
        if flag is not None:
            given[name] = (FLAGS[name], str(flag))
        elif environ.get(var, "").strip():
            given[name] = (f"${var}", environ[var].strip())
    if not given:
        return None
    missing = [f"{FLAGS[n]} (or ${ENVIRONMENT[n]})" for n in ENVIRONMENT if n not in given]
    if missing:
        named = ", ".join(f"{where}={text}" for where, text in given.values())
        raise ValueError(f"several processes: {named} given without {' and '.join(missing)}; "
                         f"give all three, or none for a single process")
    return _checked(given)


def _checked(given: dict[str, tuple[str, str]]) -> tuple[str, int, int]:
    """`(coordinator, num_processes, process_id)` from their texts, each with
    the name of where it came from; `ValueError` naming it if it is bad."""
    where, text = given["coordinator"]
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{where}: expected HOST:PORT with a port from 1 to 65535, "
                         f"e.g. 10.0.0.1:1234, got {text!r}")
    counts: dict[str, int] = {}
    for name, low in (("num_processes", 1), ("process_id", 0)):
        where, text = given[name]
        value = int(text) if text.lstrip("-").isdigit() else None
        if value is None or value < low:
            raise ValueError(f"{where}: expected an integer >= {low}, got {text!r}")
        counts[name] = value
    n, i = counts["num_processes"], counts["process_id"]
    if i >= n:
        raise ValueError(f"{given['process_id'][0]}={i} is out of range for "
                         f"{given['num_processes'][0]}={n}: process ids run from 0 to {n - 1}")
    return given["coordinator"][1], n, i


def initialize(coordinator: str, num_processes: int, process_id: int,
               timeout_seconds: int = 300) -> None:
    """Join the job: gloo collectives between the processes' CPU devices, then
    `jax.distributed.initialize`. Must run before anything uses JAX's devices
    (the device count, e.g. `runner.use_cpu_devices`, may be set before or
    after). Waits up to `timeout_seconds` for the other processes. A bad
    value is a `ValueError` naming the argument, before anything starts."""
    coordinator, num_processes, process_id = _checked(
        {name: (name, str(value)) for name, value in
         (("coordinator", coordinator), ("num_processes", num_processes),
          ("process_id", process_id))})
    if jax.distributed.is_initialized():
        raise ValueError("several processes: jax.distributed.initialize() has run already in "
                         "this process; drop --coordinator, --num-processes and --process-id "
                         "(or the JAX_* variables), or do not call it yourself")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=timeout_seconds)
    except RuntimeError as e:
        if "before any JAX" in str(e):
            raise ValueError("several processes: JAX's devices are in use already in this "
                             "process; call initialize (or jax.distributed.initialize) before "
                             "anything else uses JAX") from None
        raise


def initialize_from(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None
                    ) -> bool:
    """`initialize` with the flags of `add_arguments` (or the environment), if
    they name a coordinator; True if this process joined a job of several. A
    bad or missing value is `parser.error` (or a `ValueError`), before
    anything has run."""
    try:
        found = settings(args)
        if found is not None:
            initialize(*found)
    except ValueError as e:
        if parser is None:
            raise
        parser.error(str(e))
    return found is not None


def is_writer() -> bool:
    """Whether this process writes results: process 0 of a job of several, or
    the only process (then without starting JAX's backends)."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


def on_writer(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` run by process 0 alone; its value (JSON: a
    string, number, list, dict or None) or the exception it raised reaches
    every process, so all go on, or all stop, alike. A collective: every
    process calls it at the same point. In a single process it is just the
    call (JAX's backends are not started)."""
    if not jax.distributed.is_initialized():
        return fn(*args, **kwargs)
    error: Exception | None = None
    payload = b""
    if is_writer():
        try:
            payload = json.dumps({"value": fn(*args, **kwargs)}).encode()
        except Exception as e:  # every process stops with it, not only process 0
            error = e
            payload = json.dumps({"error": [type(e).__name__, str(e)]}).encode()
    received = json.loads(_broadcast_bytes(payload))
    if error is not None:
        raise error
    if "error" in received:
        kind, message = received["error"]
        cls = getattr(builtins, kind, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            cls = RuntimeError
        raise cls(f"on process 0: {message}")
    return received["value"]


def writer_only(results: R) -> R:
    """`results` (a `ResultsFile`, e.g. `experiments.cli.DurableResults`) as
    seen by a job of several processes: process 0 reads it and every process
    gets what it read (`on_writer`); `append` and `flush` write on process 0
    and do nothing elsewhere, so the other processes never open the file (on
    other hosts it need not exist). Unchanged in a single process."""
    if not jax.distributed.is_initialized():
        return results
    return cast(R, ProcessZeroResults(results))


class ProcessZeroResults(ResultsFile):
    """`writer_only`'s view of a results file in a job of several processes."""

    def __init__(self, inner: ResultsFile):
        super().__init__(inner.path)
        self.inner = inner

    def append(self, record: dict[str, Any]) -> None:
        if is_writer():
            self.inner.append(record)

    def extend(self, records: Iterable[dict[str, Any]], *, where: str = "extend") -> None:
        if is_writer():
            self.inner.extend(records, where=where)

    def flush(self) -> None:
        flush = getattr(self.inner, "flush", None)
        if is_writer() and flush is not None:
            flush()

    def read(self) -> tuple[list[dict[str, Any]], list[str]]:
        read: list[list[Any]] = on_writer(lambda: list(self.inner.read()))
        return read[0], read[1]


def _broadcast_bytes(data: bytes) -> bytes:
    """Process 0's `data`, on every process."""
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
    buffer = np.frombuffer(data, np.uint8) if is_writer() else np.zeros(size, np.uint8)
    return np.asarray(multihost_utils.broadcast_one_to_all(buffer)).tobytes()
