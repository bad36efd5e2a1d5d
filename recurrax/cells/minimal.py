r"""minGRU and minLSTM: the minimal gated cells of Feng et al., "Were RNNs All
We Needed?" (2024), whose gates read the input alone, so that the recurrence
is linear in `h`,

    h' = a ⊙ h + b,        a, b > 0 from x alone,

and a whole sequence is one associative scan (`Cell.linear`, in the paper's
log space). Both keep the candidate positive with

    g(v) = v + 0.5  (v ≥ 0),    σ(v)  (v < 0),

as the paper's log-space version does.

`step` is the sequential form. `linear` is the paper's log-space parallel
form: with `log a_t`, `log b_t = log w_t + log g(h̃_t)` (`w` the weight of
`h̃`; `log g(v) = log(v + 0.5)` for v ≥ 0, `−softplus(−v)` otherwise) and
`a*_t = Σ_{s≤t} log a_s`,

    h_t = exp(a*_t) ⊙ h_0 + exp(a*_t + logcumsumexp_{s≤t}(log b_s − a*_s))

(`recurrax._linear_scan.log_diagonal`). The paper takes `log h_0`, which
needs `h_0 > 0`; here the `h_0` term stays linear, so a carry of any sign (a
negative one handed on from a previous sequence, or one set by hand) runs
exactly as `step` runs it. An invalid step has `log a = 0`, `log b = −inf`
(the carry kept).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from recurrax import _linear_scan
from recurrax import initializers as inits
from recurrax.cells import _common as C
from recurrax.protocols import Cell

#: `(gate pre-activations) -> (weight of h, weight of h̃)`, or their logarithms.
Weights = Callable[..., tuple[jax.Array, jax.Array]]


def _g(v: jax.Array) -> jax.Array:
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


def _log_g(v: jax.Array) -> jax.Array:
    """`log g(v)`: `log(v + 0.5)` for v ≥ 0, `−softplus(−v)` otherwise; the
    `maximum` keeps the branch not taken finite (else its NaN gradient would
    leak through `where`)."""
    return jnp.where(v >= 0, jnp.log(jnp.maximum(v, 0.0) + 0.5), jax.nn.log_sigmoid(v))


def _gru_weights(k: jax.Array):
    return jax.nn.sigmoid(-k), jax.nn.sigmoid(k)  # 1 − z, z (no cancellation in 1 − z)


def _gru_log_weights(k: jax.Array):
    return -jax.nn.softplus(k), -jax.nn.softplus(-k)


def _log_ratio(k_f: jax.Array, k_i: jax.Array) -> jax.Array:
    """`log i − log f = softplus(−k_f) − softplus(−k_i)`."""
    return jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)


def _lstm_weights(k_f: jax.Array, k_i: jax.Array):
    """`f / (f + i)` and `i / (f + i)`, as `σ(∓(log i − log f))`: the same
    numbers, but finite when both gates saturate shut (`f + i` underflowing
    to 0 would make the quotient, or its derivative, NaN or inf in float32)."""
    diff = _log_ratio(k_f, k_i)
    return jax.nn.sigmoid(-diff), jax.nn.sigmoid(diff)


def _lstm_log_weights(k_f: jax.Array, k_i: jax.Array):
    diff = _log_ratio(k_f, k_i)
    return -jax.nn.softplus(diff), -jax.nn.softplus(-diff)


def _minimal(
    name: str,
    hidden_size: int,
    gates: Sequence[str],
    weights: Weights,
    log_weights: Weights,
    initializers: inits.Initializers,
) -> Cell:
    """The cell `h' = w_h ⊙ h + w_h̃ ⊙ g(x W_xh + b_h)`, `(w_h, w_h̃) =
    weights(x W_x{gate} + b_{gate} for each gate)`."""
    H = C.check_hidden_size(name, hidden_size)
    Wx = [f"W_x{g}" for g in gates] + ["W_xh"]
    b = [f"b_{g}" for g in gates] + ["b_h"]
    init = C.param_initializer(
        name, H, input_kernels=Wx, recurrent_kernels=[], biases=b, initializers=initializers,
    )

    def step(params: dict, h: jax.Array, px: jax.Array):
        *k, v = C.split(px, len(Wx))
        keep, take = weights(*k)
        h = keep * h + take * _g(v)
        return h, h

    def linear(params: dict, pxs: jax.Array, h0: jax.Array, valid: jax.Array | None):
        *k, v = C.split(pxs, len(Wx))
        log_a, log_take = log_weights(*k)
        log_b = log_take + _log_g(v)
        if valid is not None:  # an invalid step: a = 1, b = 0
            keep = valid[..., None]
            log_a = jnp.where(keep, log_a, jnp.zeros((), log_a.dtype))
            log_b = jnp.where(keep, log_b, jnp.full((), -jnp.inf, log_b.dtype))
        return _linear_scan.log_diagonal(log_a, log_b, h0)

    return Cell(init, C.zeros_carry(H), C.linear_prepare(name, Wx, b), step, H, linear)


def mingru(
    hidden_size: int,
    *,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""minGRU (Feng et al. 2024):

        z  = σ(x W_xz + b_z)
        h̃  = g(x W_xh + b_h)
        h' = (1 − z) ⊙ h + z ⊙ h̃,              y = h'

    `log a = log(1 − z) = −softplus(k)`, `log w = log z = −softplus(−k)`,
    `k = x W_xz + b_z`.

    Params: `W_xz, W_xh: (D, H)`, `b_z, b_h: (H,)`. Carry: `h`. `prepare` is
    one matmul `x [W_xz|W_xh] + [b_z|b_h]`; `step` has no matmul; `linear`
    is the log-space scan of the module docstring.
    """
    return _minimal("mingru", hidden_size, ["z"], _gru_weights, _gru_log_weights,
                    initializers)


def minlstm(
    hidden_size: int,
    *,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""minLSTM (Feng et al. 2024), its gates normalised to sum to one:

        f  = σ(x W_xf + b_f),   i = σ(x W_xi + b_i)
        f' = f / (f + i),       i' = i / (f + i)
        h̃  = g(x W_xh + b_h)
        h' = f' ⊙ h + i' ⊙ h̃,                  y = h'

    With `diff = softplus(−k_f) − softplus(−k_i)` (`= log i − log f`, the
    `k` the gates' pre-activations): `log f' = −softplus(diff)`,
    `log i' = −softplus(−diff)`.

    Params: `W_xf, W_xi, W_xh: (D, H)`, `b_f, b_i, b_h: (H,)`. Carry: `h`.
    `prepare` is one matmul `x [W_xf|W_xi|W_xh] + [b_f|b_i|b_h]`; `step` has
    no matmul and computes `f' = σ(−diff)`, `i' = σ(diff)` (the same
    numbers as the quotients, finite where both gates saturate shut and
    `f + i` underflows); `linear` is the log-space scan of the module
    docstring.
    """
    return _minimal("minlstm", hidden_size, ["f", "i"], _lstm_weights, _lstm_log_weights,
                    initializers)
