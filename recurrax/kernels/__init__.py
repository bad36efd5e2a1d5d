r"""Fused recurrent kernels in Pallas: `scan(cell, params, xs, ...)` runs a
cell over a sequence in one kernel launch (and its gradient in a second),
with the recurrent weights held by each program for all T steps.

    carry, ys = recurrax.kernels.scan(cell, params, xs)                  # a GPU
    carry, ys = recurrax.kernels.scan(cell, params, xs, interpret=True)  # any backend

`recurrax.scan(..., kernel="pallas")` calls it; `kernel=None` chooses between
it and `lax.scan` by `recurrax.scan.default_kernel`. See docs/performance.md.
"""

from recurrax.kernels._plan import KernelUnsupported
from recurrax.kernels._scan import GPU_TILE, scan

__all__ = ["GPU_TILE", "KernelUnsupported", "scan"]
