"""Weights converted between recurrax and PyTorch or Flax, exactly.

    seq, params = recurrax.interop.from_torch(torch_lstm)   # nn.RNN / LSTM / GRU
    module = recurrax.interop.to_torch(seq, params)
    cell, params = recurrax.interop.from_flax(flax_cell, variables)  # linen or NNX
    module, variables = recurrax.interop.to_flax(cell, params)

The three cells all three libraries share convert: the tanh RNN, the LSTM
and the GRU in its reset-after form (`recurrax.cells.gru(H,
reset_after=True)`). A converted model computes the same function as the
original up to float32 rounding; anything without an exact counterpart
(PyTorch's `proj_size`, ReLU RNNs, dropout between layers; Flax's custom
activations; recurrax's other cells, residual stacks, ...) is refused with an
error naming the option, never converted approximately.

Cells are closures, so `to_torch` and `to_flax` read the kind of cell and the
structure (stack, bidirectional) from the params, and check the given cell or
`Seq` against them on a small random input (the traced programs, else the
numbers). Neither torch nor flax is imported until a converter is called.
See docs/interop.md.
"""

from recurrax.interop._flax import from_flax, to_flax
from recurrax.interop._torch import carry_from_torch, carry_to_torch, from_torch, to_torch

__all__ = ["carry_from_torch", "carry_to_torch", "from_flax", "from_torch", "to_flax", "to_torch"]
