"""The gated recurrent unit (Cho et al. 2014), in both of its published forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax import initializers as inits
from recurrax.cells import _common as C
from recurrax.protocols import Cell


def gru(
    hidden_size: int,
    reset_after: bool = False,
    *,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""The GRU cell:

        r  = σ(x W_xr + h W_hr + b_r)          reset gate
        z  = σ(x W_xz + h W_hz + b_z)          update gate
        h̃  = tanh(x W_xh + (r ⊙ h) W_hh + b_h)
        h' = z ⊙ h + (1 − z) ⊙ h̃,              y = h'

    With `reset_after=True` (the cuDNN, PyTorch, Keras and Flax form) the reset
    gate acts after the recurrent matmul, which has its own bias `b_hh`:

        h̃  = tanh(x W_xh + b_h + r ⊙ (h W_hh + b_hh))

    Params: `W_x{r,z,h}: (D, H)`, `W_h{r,z,h}: (H, H)`, `b_{r,z,h}: (H,)`, and
    `b_hh: (H,)` with `reset_after`. Carry: `h`. `prepare` is one matmul
    `x [W_xr|W_xz|W_xh] + [b_r|b_z|b_h]`; `step` is one matmul
    `h [W_hr|W_hz]` then `(r ⊙ h) W_hh` (reset before), or one matmul
    `h [W_hr|W_hz|W_hh]` (reset after).
    """
    H = C.check_hidden_size("gru", hidden_size)
    reset_after = C.check_flag("gru", "reset_after", reset_after)
    Wx, b = ["W_xr", "W_xz", "W_xh"], ["b_r", "b_z", "b_h"]
    Wh = ["W_hr", "W_hz", "W_hh"]

    init = C.param_initializer(
        "gru", H,
        input_kernels=Wx, recurrent_kernels=Wh,
        biases=b + ["b_hh"] if reset_after else b,
        initializers=initializers,
    )

    def step_reset_before(params: dict, h: jax.Array, px: jax.Array):
        px_r, px_z, px_h = C.split(px, 3)
        h_r, h_z = C.split(C.recurrent_matmul(params, h, ["W_hr", "W_hz"]), 2)
        r = jax.nn.sigmoid(px_r + h_r)
        z = jax.nn.sigmoid(px_z + h_z)
        h_tilde = jnp.tanh(px_h + C.recurrent_matmul(params, r * h, ["W_hh"]))
        h = z * h + (1.0 - z) * h_tilde
        return h, h

    def step_reset_after(params: dict, h: jax.Array, px: jax.Array):
        px_r, px_z, px_h = C.split(px, 3)
        h_r, h_z, h_h = C.split(C.recurrent_matmul(params, h, Wh), 3)
        r = jax.nn.sigmoid(px_r + h_r)
        z = jax.nn.sigmoid(px_z + h_z)
        h_tilde = jnp.tanh(px_h + r * (h_h + params["b_hh"]))
        h = z * h + (1.0 - z) * h_tilde
        return h, h

    step = step_reset_after if reset_after else step_reset_before
    return Cell(init, C.zeros_carry(H), C.linear_prepare("gru", Wx, b), step, H)
