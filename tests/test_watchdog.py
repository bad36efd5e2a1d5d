"""The stall watchdog fires when the process stops using CPU while armed, and
only then."""

import threading
import time

import pytest

from experiments.jozefowicz.watchdog import StallWatchdog, cpu_seconds


class FakeClock:
    """A CPU clock the test advances by hand."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def watch(clock, seconds=0.2):
    fired = threading.Event()
    return StallWatchdog(seconds, fired.set, clock=clock, poll=0.01), fired


def test_fires_when_armed_and_no_cpu_is_used():
    clock = FakeClock()
    dog, fired = watch(clock)
    with dog.armed():
        assert fired.wait(2.0)
    dog.close()


def test_quiet_while_cpu_time_advances():
    clock = FakeClock()
    dog, fired = watch(clock)
    with dog.armed():
        for _ in range(60):  # 0.6 s of wall time, CPU advancing throughout
            clock.t += 0.1
            time.sleep(0.01)
    assert not fired.is_set()
    dog.close()


def test_quiet_while_disarmed_and_when_turned_off():
    clock = FakeClock()
    dog, fired = watch(clock)
    with dog.armed():
        clock.t += 1.0
    time.sleep(0.5)  # idle, but not armed
    assert not fired.is_set()
    dog.close()
    off = StallWatchdog(None, fired.set, clock=clock)
    with off.armed():
        time.sleep(0.1)
    assert not fired.is_set() and off._thread is None


def test_rejects_a_bad_period_and_reads_real_cpu_time():
    with pytest.raises(ValueError, match="seconds must be > 0"):
        StallWatchdog(0.0)
    before = cpu_seconds()
    sum(i * i for i in range(300_000))
    assert cpu_seconds() > before


def test_a_stalled_command_starts_itself_again(tmp_path):
    import os
    import subprocess
    import sys
    script = tmp_path / "stall.py"
    script.write_text(
        "import os, time\n"
        "from experiments.jozefowicz.watchdog import StallWatchdog, restarts\n"
        "n = int(os.environ.get('RUNS', '0')); os.environ['RUNS'] = str(n + 1)\n"
        "print('run', n, 'restarts', restarts(), flush=True)\n"
        "if n == 0:\n"
        "    with StallWatchdog(0.5).armed():\n"
        "        time.sleep(30)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("RUNS", None)
    env.pop("JOZEFOWICZ_STALL_RESTARTS", None)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=25)
    assert out.returncode == 0
    assert out.stdout.split() == ["run", "0", "restarts", "0", "run", "1", "restarts", "1"]
    assert "restarting the same command" in out.stderr
