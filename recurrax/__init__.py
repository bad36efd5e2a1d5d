"""recurrax: recurrent neural network cells as pure JAX functions.

    cell = recurrax.cells.lstm(128)
    params = cell.init(key, input_size)
    carry, ys = recurrax.scan(cell, params, xs)      # xs: [T, *batch, D]

`import recurrax` loads the core: `recurrax.cells` (the cells and their
equations), `scan` and `step` (running a sequence), the combinators `layer`,
`stack`, `bidirectional` and `with_resets`, the masking helpers, and `nn`
(layers, losses, attention). The rest is imported by name:

    recurrax.train      train step, population, batching, checkpoint, results
    recurrax.models     language model, captioner, sampling, beam search
    recurrax.search     the architecture search: graphs, mutations, universal cell
    recurrax.parallel   a cell evaluated over all time steps at once (DEER, ELK)
    recurrax.metrics    BLEU, n-gram baseline, gradient flow, Lyapunov exponent
    recurrax.tasks      the study's datasets
    recurrax.kernels    fused Pallas kernels for scan (GPU; Pallas's interpreter elsewhere)
    recurrax.interop    weights from and to PyTorch (nn.RNN/LSTM/GRU) and Flax cells
    recurrax.nnx        recurrax cells as Flax NNX modules (recurrax.linen: Linen)
"""

from recurrax import cells, initializers, nn
from recurrax.combinators import bidirectional, layer, stack
from recurrax.masking import reverse_sequence, sequence_mask
from recurrax.protocols import Cell, Seq
from recurrax.resets import with_resets
from recurrax.scan import default_hoist, default_kernel, scan, step

__version__ = "0.1.0"

__all__ = [
    "Cell", "Seq", "bidirectional", "cells", "default_hoist", "default_kernel", "initializers",
    "layer", "nn",
    "reverse_sequence", "scan", "sequence_mask", "stack", "step", "with_resets",
]
