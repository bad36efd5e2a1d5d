"""Small stateless building blocks used around recurrent layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dropout(key: jax.Array | None, x: jax.Array, rate: float) -> jax.Array:
    r"""Inverted dropout: each entry is kept with probability `1 − rate` and
    scaled by `1 / (1 − rate)`, so `E[dropout(x)] = x`:

        out = x ⊙ m / (1 − rate),   m_i ~ Bernoulli(1 − rate)

    `key=None` or `rate=0` returns `x` unchanged (evaluation mode).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must lie in [0, 1), got {rate!r}")
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
