"""recurrax: recurrent neural network cells as pure JAX functions.

    cell = recurrax.cells.lstm(128)
    params = cell.init(key, input_size)
    carry, ys = recurrax.scan(cell, params, xs)      # xs: [T, *batch, D]

See `recurrax.cells` for the cells and their equations, `recurrax.scan` for
running a sequence, and `layer`, `stack`, `bidirectional` for combinators;
`attention` (feed-forward, additive, soft visual), `beam` (beam search),
`bleu`, `analysis` (gradient flow) and `captioner` for the applications.
"""

from recurrax import (
    analysis, attention, batching, beam, bleu, captioner, cells, checkpoint, deferred, initializers,
    losses, models, ngram, nn, sample, train,
)
from recurrax.combinators import bidirectional, layer, stack
from recurrax.masking import reverse_sequence, sequence_mask
from recurrax.protocols import Cell, Seq
from recurrax.scan import default_hoist, scan, step

__version__ = "0.1.0"

from recurrax.resets import with_resets

__all__ = [
    "Cell", "Seq", "analysis", "attention", "batching", "beam", "bleu", "captioner", "bidirectional", "cells", "checkpoint", "default_hoist", "deferred",
    "initializers", "layer", "losses", "models", "ngram", "nn", "reverse_sequence", "sample",
    "scan", "sequence_mask", "stack", "step", "train", "with_resets",
]
