"""The Jozefowicz, Zaremba and Sutskever (ICML 2015) architecture comparison as
a command: `python -m experiments.jozefowicz run|report`.

XLA CPU's multi-threaded Eigen pool was seen to wedge (all threads idle, the
main thread waiting in `xla::Semaphore::Acquire`) while running the vmapped
population step: the quick preset hung after 18 trials. The same symptom with
vmap graphs is reported upstream together with this workaround, so the
harness turns the pool off before JAX starts its backend (the project's notes
measured the flag as costing little on this CPU). An `XLA_FLAGS` already set
by the user is kept and extended.
"""

import os

_EIGEN_OFF = "--xla_cpu_multi_thread_eigen=false"
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_EIGEN_OFF}".strip()
