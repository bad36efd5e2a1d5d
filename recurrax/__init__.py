"""recurrax: recurrent neural network cells as pure JAX functions.

    cell = recurrax.cells.lstm(128)
    params = cell.init(key, input_size)
    carry, ys = recurrax.scan(cell, params, xs)      # xs: [T, *batch, D]

See `recurrax.cells` for the cells and their equations, `recurrax.scan` for
running a sequence, and `layer`, `stack`, `bidirectional` for combinators.
"""

from recurrax import cells, initializers, nn
from recurrax.combinators import bidirectional, layer, stack
from recurrax.masking import reverse_sequence, sequence_mask
from recurrax.protocols import Cell, Seq
from recurrax.scan import default_hoist, scan, step

__version__ = "0.1.0"

__all__ = [
    "Cell", "Seq", "bidirectional", "cells", "default_hoist", "initializers", "layer",
    "nn", "reverse_sequence", "scan", "sequence_mask", "stack", "step",
]
