"""MUT1, MUT2 and MUT3: the three cells found by the architecture search of
Jozefowicz, Zaremba and Sutskever, "An Empirical Exploration of Recurrent
Network Architectures" (ICML 2015), section 3.

All three interpolate like a GRU, `h' = h̃ ⊙ z + h ⊙ (1 − z)`, with

    h̃ = tanh((r ⊙ h) W_hh + <input term> + b_h)

and differ in how `z`, `r` and the input term read `x` and `h`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax import initializers as inits
from recurrax.cells import _common as C
from recurrax.protocols import Cell


def _interpolate(h: jax.Array, h_tilde: jax.Array, z: jax.Array):
    h = h_tilde * z + h * (1.0 - z)
    return h, h


def mut1(
    hidden_size: int,
    *,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""MUT1:

        z  = σ(x W_xz + b_z)
        r  = σ(x W_xr + h W_hr + b_r)
        h' = tanh((r ⊙ h) W_hh + tanh(x) + b_h) ⊙ z + h ⊙ (1 − z)

    `tanh(x)` enters an H-wide sum, so the input size must equal `H`.
    Params: `W_xz, W_xr: (H, H)`, `W_hr, W_hh: (H, H)`, `b_z, b_r, b_h: (H,)`.
    Carry: `h`. `prepare` gives `[x W_xz + b_z | x W_xr + b_r | tanh(x) + b_h]`.
    """
    H = C.check_hidden_size("mut1", hidden_size)
    Wx, b = ["W_xz", "W_xr"], ["b_z", "b_r"]
    init = C.param_initializer(
        "mut1", H,
        input_kernels=Wx, recurrent_kernels=["W_hr", "W_hh"], biases=b + ["b_h"],
        initializers=initializers, input_must_equal_hidden=True,
    )

    def prepare(params: dict, xs: jax.Array) -> jax.Array:
        C.check_input_features("mut1", xs, H)
        return jnp.concatenate(
            [C.project(params, xs, Wx, b), jnp.tanh(xs) + params["b_h"]], axis=-1
        )

    def step(params: dict, h: jax.Array, px: jax.Array):
        px_z, px_r, px_h = C.split(px, 3)
        z = jax.nn.sigmoid(px_z)
        r = jax.nn.sigmoid(px_r + C.recurrent_matmul(params, h, ["W_hr"]))
        return _interpolate(h, jnp.tanh(C.recurrent_matmul(params, r * h, ["W_hh"]) + px_h), z)

    return Cell(init, C.zeros_carry(H), prepare, step, H)


def mut2(
    hidden_size: int,
    *,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""MUT2:

        z  = σ(x W_xz + h W_hz + b_z)
        r  = σ(x + h W_hr + b_r)
        h' = tanh((r ⊙ h) W_hh + x W_xh + b_h) ⊙ z + h ⊙ (1 − z)

    `x` enters an H-wide sum, so the input size must equal `H`.
    Params: `W_xz, W_xh: (H, H)`, `W_hz, W_hr, W_hh: (H, H)`,
    `b_z, b_r, b_h: (H,)`. Carry: `h`. `prepare` gives
    `[x W_xz + b_z | x W_xh + b_h | x + b_r]`; `step` is one matmul
    `h [W_hz|W_hr]`, then `(r ⊙ h) W_hh`.
    """
    H = C.check_hidden_size("mut2", hidden_size)
    Wx, b = ["W_xz", "W_xh"], ["b_z", "b_h"]
    init = C.param_initializer(
        "mut2", H,
        input_kernels=Wx, recurrent_kernels=["W_hz", "W_hr", "W_hh"],
        biases=["b_z", "b_r", "b_h"],
        initializers=initializers, input_must_equal_hidden=True,
    )

    def prepare(params: dict, xs: jax.Array) -> jax.Array:
        C.check_input_features("mut2", xs, H)
        return jnp.concatenate(
            [C.project(params, xs, Wx, b), xs + params["b_r"]], axis=-1
        )

    def step(params: dict, h: jax.Array, px: jax.Array):
        px_z, px_h, px_r = C.split(px, 3)
        h_z, h_r = C.split(C.recurrent_matmul(params, h, ["W_hz", "W_hr"]), 2)
        z = jax.nn.sigmoid(px_z + h_z)
        r = jax.nn.sigmoid(px_r + h_r)
        return _interpolate(h, jnp.tanh(C.recurrent_matmul(params, r * h, ["W_hh"]) + px_h), z)

    return Cell(init, C.zeros_carry(H), prepare, step, H)


def mut3(
    hidden_size: int,
    *,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""MUT3:

        z  = σ(x W_xz + tanh(h) W_hz + b_z)
        r  = σ(x W_xr + h W_hr + b_r)
        h' = tanh((r ⊙ h) W_hh + x W_xh + b_h) ⊙ z + h ⊙ (1 − z)

    Params: `W_x{z,r,h}: (D, H)`, `W_h{z,r,h}: (H, H)`, `b_{z,r,h}: (H,)`.
    Carry: `h`. `prepare` is one matmul `x [W_xz|W_xr|W_xh] + [b_z|b_r|b_h]`;
    `step` needs three matmuls, since `tanh(h)`, `h` and `r ⊙ h` differ.
    """
    H = C.check_hidden_size("mut3", hidden_size)
    Wx, b = ["W_xz", "W_xr", "W_xh"], ["b_z", "b_r", "b_h"]
    init = C.param_initializer(
        "mut3", H,
        input_kernels=Wx, recurrent_kernels=["W_hz", "W_hr", "W_hh"], biases=b,
        initializers=initializers,
    )

    def step(params: dict, h: jax.Array, px: jax.Array):
        px_z, px_r, px_h = C.split(px, 3)
        z = jax.nn.sigmoid(px_z + C.recurrent_matmul(params, jnp.tanh(h), ["W_hz"]))
        r = jax.nn.sigmoid(px_r + C.recurrent_matmul(params, h, ["W_hr"]))
        return _interpolate(h, jnp.tanh(C.recurrent_matmul(params, r * h, ["W_hh"]) + px_h), z)

    return Cell(init, C.zeros_carry(H), C.linear_prepare("mut3", Wx, b), step, H)
