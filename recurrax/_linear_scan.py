r"""Linear recurrences solved in parallel over time with `lax.associative_scan`.

    h_t = a_t ⊙ h_{t−1} + b_t        (`diagonal`: elementwise; real or complex)
    h_t = A_t h_{t−1} + b_t          (`dense`: A_t an N × N matrix per step)
    h_t = a_t ⊙ h_{t−1} + b_t        (`log_diagonal`: from log a_t, log b_t; b_t ≥ 0)

for t = 1 … T from a given `h_0`, time on axis 0. The pairs `(a_t, b_t)`
compose associatively, `(a, b) ∘ (a', b') = (a' a, a' b + b')` (the later
step on the left of the product), so all T states come from one
associative scan: O(log T) depth, O(T) work (O(T N³) for `dense`). With
`reverse=True` the recurrence runs from t = T down to 1,
`h_t = a_t h_{t+1} + b_t` from `h_{T+1} = h0`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def diagonal(a: jax.Array, b: jax.Array, h0: jax.Array, *, reverse: bool = False) -> jax.Array:
    """All states of `h_t = a_t ⊙ h_{t−1} + b_t`: `[T, ...]` from `a, b`
    `[T, ...]` and `h0` broadcastable to one step."""
    first = 0 if not reverse else -1
    b = b.at[first].add(a[first] * h0)  # fold h_0 into the first step

    def combine(earlier, later):
        a1, b1 = earlier
        a2, b2 = later
        return a2 * a1, a2 * b1 + b2

    return jax.lax.associative_scan(combine, (a, b), reverse=reverse)[1]


def dense(A: jax.Array, b: jax.Array, h0: jax.Array, *, reverse: bool = False) -> jax.Array:
    """All states of `h_t = A_t h_{t−1} + b_t`: `[T, ..., N]` from `A`
    `[T, ..., N, N]`, `b` `[T, ..., N]` and `h0` `[..., N]`."""
    first = 0 if not reverse else -1
    b = b.at[first].add(jnp.einsum("...ij,...j->...i", A[first], h0))

    def combine(earlier, later):
        A1, b1 = earlier
        A2, b2 = later
        return A2 @ A1, jnp.einsum("...ij,...j->...i", A2, b1) + b2

    return jax.lax.associative_scan(combine, (A, b), reverse=reverse)[1]


def log_diagonal(log_a: jax.Array, log_b: jax.Array, h0: jax.Array, *,
                 reverse: bool = False) -> jax.Array:
    r"""All states of `h_t = a_t ⊙ h_{t−1} + b_t` for positive `a_t, b_t`
    given by their logarithms (a `b_t = 0` is `log_b = −inf`), and any real
    `h0` (positive, zero or negative):

        h_t = exp(a*_t) ⊙ h_0 + exp(a*_t + logcumsumexp_{s≤t}(log b_s − a*_s)),
        a*_t = Σ_{s≤t} log a_s

    the log-space form of Feng et al. (2024, "Were RNNs All We Needed?"),
    except that `h_0` enters linearly instead of as `log h_0`, so it may have
    any sign. `[T, ...]` from `log_a, log_b` `[T, ...]` and `h0` broadcastable
    to one step; `reverse` as in `diagonal`.

    The second term is computed by one associative scan over the pairs
    `(log a_t, log b_t)`, composed as `(α, β) ∘ (α', β') = (α + α',
    logaddexp(α' + β, β'))`: each `a*_t − a*_s` is summed directly instead of
    as the difference of two cumulative sums, which in float32 would lose
    `|a*_t|·2⁻²⁴` of absolute accuracy (a relative error of 1e-4 in `h` after
    a few thousand steps of decay). The `logaddexp` is written so that two
    `−inf` (a stretch with `b = 0`) give `−inf` and a zero gradient, not NaN.
    """

    def combine(earlier, later):
        la1, lb1 = earlier
        la2, lb2 = later
        return la1 + la2, _logaddexp(la2 + lb1, lb2)

    log_a_star, log_sum = jax.lax.associative_scan(combine, (log_a, log_b), reverse=reverse)
    return jnp.exp(log_a_star) * h0 + jnp.exp(log_sum)


def _logaddexp(x: jax.Array, y: jax.Array) -> jax.Array:
    """`log(exp(x) + exp(y))`, `−inf` where both are `−inf`, with finite
    derivatives there (`jnp.logaddexp`'s are NaN at `(−inf, −inf)`)."""
    m = jax.lax.stop_gradient(jnp.maximum(x, y))
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros((), m.dtype))
    s = jnp.exp(x - m) + jnp.exp(y - m)
    positive = s > 0
    return jnp.where(positive, m + jnp.log(jnp.where(positive, s, 1.0)), -jnp.inf)
