"""A cell run over a whole sequence at once, instead of one step after another.

    carry, ys = recurrax.parallel.scan(cell, params, xs)            # = recurrax.scan(...)
    carry, ys, info = recurrax.parallel.solve(cell, params, xs, method="deer")

Cells whose recurrence is linear in the carry (`recurrax.cells.LINEAR_NAMES`)
are solved exactly by one associative scan; every other cell by Newton-type
iterations over all time steps (DEER, quasi-DEER, ELK, quasi-ELK), each a
linear recurrence solved by an associative scan, with gradients by implicit
differentiation. `evaluate` has the details, `newton` the iterations,
`kalman` the damped step, `implicit` the derivative.
"""

from recurrax.parallel.evaluate import (
    AUTO_STEPS,
    DEFAULT_DAMPING,
    DEFAULT_MAX_ITERS,
    Info,
    ParallelError,
    scan,
    solve,
)
from recurrax.parallel.newton import METHODS

__all__ = ["AUTO_STEPS", "DEFAULT_DAMPING", "DEFAULT_MAX_ITERS", "METHODS", "Info",
           "ParallelError", "scan", "solve"]
