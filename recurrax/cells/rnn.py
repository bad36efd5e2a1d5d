"""The vanilla (Elman, "Tanh") recurrent cell."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax import initializers as inits
from recurrax.cells import _common as C
from recurrax.protocols import Cell


def rnn(
    hidden_size: int,
    *,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""The vanilla RNN cell:

        h' = tanh(x W_xh + h W_hh + b_h),      y = h'

    Params: `W_xh: (D, H)`, `W_hh: (H, H)`, `b_h: (H,)`. Carry: `h`, shape
    `(*batch, H)`. `prepare` computes `x W_xh + b_h`; `step` adds `h W_hh`.
    """
    H = C.check_hidden_size("rnn", hidden_size)

    init = C.param_initializer(
        "rnn", H,
        input_kernels=["W_xh"], recurrent_kernels=["W_hh"], biases=["b_h"],
        initializers=initializers,
    )

    def step(params: dict, h: jax.Array, px: jax.Array):
        h = jnp.tanh(px + C.recurrent_matmul(params, h, ["W_hh"]))
        return h, h

    return Cell(init, C.zeros_carry(H), C.linear_prepare("rnn", ["W_xh"], ["b_h"]), step, H)
