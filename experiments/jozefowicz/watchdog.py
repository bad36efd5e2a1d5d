"""Restart the run when XLA CPU wedges.

On this machine (jaxlib 0.10.2, 2 cores) the population loop was seen to stop
for good, at 0% CPU: the main thread waits in `xla::Semaphore::Acquire` inside
an executable's `Execute` while every XLA worker thread waits in a batched
LAPACK QR (drawing orthogonal matrices for a `vmap`-ed population) for chunks
that no worker is left to run, a deadlock of jaxlib 0.10.0–0.10.2. recurrax now
draws one matrix at a time (`recurrax.train.population`), and no program it builds
has a batched LAPACK call (`tests/test_no_batched_lapack.py`); this watchdog
stays as a last resort. Training always keeps a core busy, so a process
whose CPU time stops advancing for `seconds` while armed is wedged, not slow.
Because every finished trial is already on disk, the cure is to start the
same command again: it resumes, and only the population in flight is redone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads together."""
    t = os.times()
    return t.user + t.system


RESTARTS = "JOZEFOWICZ_STALL_RESTARTS"  # counts the restarts of one command


def restarts() -> int:
    """How many times this command has restarted itself after a stall."""
    return int(os.environ.get(RESTARTS, "0"))


def reexec() -> None:
    """Replace this process by a fresh run of the same command line."""
    os.environ[RESTARTS] = str(restarts() + 1)
    print("\nXLA CPU stalled (no CPU time used while training); restarting the same "
          "command, which resumes from the results file.", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def abort() -> None:
    """Stop this process (for a run called from Python, which cannot restart
    itself); the results file keeps every finished trial."""
    print("XLA CPU stalled (no CPU time used while training); stopping. Rerun the "
          "same command to resume.", file=sys.stderr, flush=True)
    os._exit(3)


class StallWatchdog:
    """While `armed()`, call `on_stall` once the process has used less than
    `min_cpu` CPU seconds in `seconds` of wall time (`seconds=None`: never)."""

    def __init__(self, seconds: float | None = 60.0, on_stall: Callable[[], None] = reexec, *,
                 clock: Callable[[], float] = cpu_seconds, min_cpu: float = 0.05,
                 poll: float | None = None):
        if seconds is not None and not seconds > 0:
            raise ValueError(f"StallWatchdog: seconds must be > 0 or None, got {seconds}")
        self.seconds, self.on_stall, self.clock, self.min_cpu = seconds, on_stall, clock, min_cpu
        self.poll = (seconds or 1.0) / 4 if poll is None else poll
        self._armed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        if self.seconds is None:
            return
        seconds = self.seconds
        mark_cpu, mark_wall = self.clock(), time.monotonic()
        while not self._stop.wait(self.poll):
            cpu, wall = self.clock(), time.monotonic()
            if not self._armed.is_set() or cpu - mark_cpu >= self.min_cpu:
                mark_cpu, mark_wall = cpu, wall
            elif wall - mark_wall >= seconds:
                self.on_stall()
                mark_cpu, mark_wall = self.clock(), time.monotonic()

    @contextlib.contextmanager
    def armed(self):
        """Watch the process for the duration of the block."""
        if self.seconds is None:
            yield self
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name="stall-watchdog")
            self._thread.start()
        self._armed.set()
        try:
            yield self
        finally:
            self._armed.clear()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
