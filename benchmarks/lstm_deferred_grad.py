r"""A hand-written LSTM backward pass that keeps only the recurrence in the
loop: the lever "weight gradients out of the loop", measured by
`benchmarks.levers` against `recurrax.scan`'s automatic one.

JAX differentiates `lax.scan` by running the transposed step in a reverse
loop, so every matmul of the step is transposed *inside* the loop: per step,
besides `dh = dG W_hᵀ` (which the recurrence needs), it computes the weight
gradients `dW_h += h_{t-1}ᵀ dG_t`, `dW_x += x_tᵀ dG_t` and the input gradient
`dx_t = dG_t W_xᵀ`, each a thin matmul (the batch is its inner dimension) plus
an accumulator update of the whole weight matrix. Here the reverse loop only
produces the gate gradients `dG_t` (`[T, B, 4H]`) and `dh`, `dc`:

    dh_t  = dy_t + dG_{t+1} W_hᵀ          dc_t = dc_{t+1} ⊙ f_{t+1} + dh_t ⊙ o_t ⊙ (1 − tanh² c_t)
    dG_t  = [dc_t ⊙ g_t ⊙ i_t(1−i_t), dc_t ⊙ c_{t−1} ⊙ f_t(1−f_t),
             dc_t ⊙ i_t ⊙ (1−g_t²),    dh_t ⊙ tanh c_t ⊙ o_t(1−o_t)]

and after the loop one GEMM each gives `dW_h = H_prevᵀ dG`, `dW_x = Xᵀ dG`,
`db = Σ dG`, `dX = dG W_xᵀ` over all `T·B` rows. The forward saves `h`, `c` and
the four activated gates per step. Same numbers as autodiff (tested in
`benchmarks/tests/test_levers.py`). The library's `scan` does the generic part
of this for every cell that marks its recurrent matmuls
(`scan(weight_grads="after_loop")`, the default; `recurrax._deferred`); this
one cell's hand-written pass measures what the rest (fewer residuals, fewer
elementwise kernels, the input projection's gradients out of the loop too)
would add.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax.cells import _common as C


def _forward(Wx, Wh, b, xs):
    """The LSTM over `xs [T, B, D]` from a zero carry with fused weights
    `Wx (D, 4H)`, `Wh (H, 4H)`, `b (4H,)` (gate order i, f, g, o); returns
    every step's `h`, `c` and activated gates."""
    H = Wh.shape[0]

    def body(carry, x):
        c, h = carry
        i, f, g, o = jnp.split(x @ Wx + b + h @ Wh, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (c, h), (h, c, jnp.concatenate([i, f, g, o], axis=-1))

    zeros = jnp.zeros((xs.shape[1], H), xs.dtype)
    return jax.lax.scan(body, (zeros, zeros), xs)[1]


@jax.custom_vjp
def lstm(Wx, Wh, b, xs):
    """All hidden states `[T, B, H]` of the LSTM (see the module docstring)."""
    return _forward(Wx, Wh, b, xs)[0]


def _lstm_fwd(Wx, Wh, b, xs):
    hs, cs, gates = _forward(Wx, Wh, b, xs)
    return hs, (Wx, Wh, xs, hs, cs, gates)


def _lstm_bwd(residuals, dys):
    Wx, Wh, xs, hs, cs, gates = residuals
    T, B, D = xs.shape
    H = Wh.shape[0]
    zeros = jnp.zeros((B, H), xs.dtype)
    c_prev = jnp.concatenate([zeros[None], cs[:-1]])

    def body(carry, step):
        dh_next, dc_next = carry
        dy, c, cp, a = step
        i, f, g, o = jnp.split(a, 4, axis=-1)
        dh = dy + dh_next
        tc = jnp.tanh(c)
        dc = dc_next + dh * o * (1 - tc * tc)
        dG = jnp.concatenate([dc * g * i * (1 - i), dc * cp * f * (1 - f),
                              dc * i * (1 - g * g), dh * tc * o * (1 - o)], axis=-1)
        return (dG @ Wh.T, dc * f), dG

    _, dG = jax.lax.scan(body, (zeros, zeros), (dys, cs, c_prev, gates), reverse=True)
    h_prev = jnp.concatenate([zeros[None], hs[:-1]]).reshape(T * B, H)
    dG = dG.reshape(T * B, 4 * H)
    return (xs.reshape(T * B, D).T @ dG, h_prev.T @ dG, dG.sum(0),
            (dG @ Wx.T).reshape(T, B, D))


lstm.defvjp(_lstm_fwd, _lstm_bwd)


def fused_params(params: dict) -> tuple:
    """`(Wx, Wh, b)` from a recurrax `lstm` params dict (gates i, f, g, o)."""
    return tuple(C.fused(params, [f"{prefix}{gate}" for gate in "ifgo"])
                 for prefix in ("W_x", "W_h", "b_"))
