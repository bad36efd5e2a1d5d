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
    kernel_init: inits.Initializer = inits.kernel_init,
    recurrent_init: inits.Initializer = inits.recurrent_init,
    bias_init: inits.Initializer = inits.bias_init,
    param_dtype=jnp.float32,
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
        kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init,
        param_dtype=param_dtype,
    )

    def prepare(params: dict, xs: jax.Array) -> jax.Array:
        C.check_input_features("rnn", xs, params["W_xh"].shape[0])
        return C.project(params, xs, ["W_xh"], ["b_h"])

    def step(params: dict, h: jax.Array, px: jax.Array):
        h = jnp.tanh(px + h @ params["W_hh"])
        return h, h

    return Cell(init, C.zeros_carry(H), prepare, step, H)
