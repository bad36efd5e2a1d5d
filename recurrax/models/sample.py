r"""Autoregressive sampling in one compiled loop.

At each step the model's logits `z` become a distribution

    p(w) ∝ exp(z_w / τ)   over the top-k logits (all if `top_k=None`),

the next token is drawn from it and fed back. `τ → 0` is greedy decoding;
`temperature=0` takes the argmax exactly. The loop is one `lax.scan` over
steps (no Python loop per token), so `jit` compiles it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def next_token(key: jax.Array, logits: jax.Array, temperature: float = 1.0,
               top_k: int | None = None) -> jax.Array:
    """Draw one token per row from `logits[..., V]` at `temperature`, among the
    `top_k` largest logits."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None:
        if not 1 <= top_k <= logits.shape[-1]:
            raise ValueError(f"top_k must lie in [1, {logits.shape[-1]}], got {top_k}")
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if temperature == 0:
        return jnp.argmax(logits, axis=-1)
    return jax.random.categorical(key, logits / temperature, axis=-1)


def sample(
    step: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]],
    params: Any,
    carry: Any,
    token: jax.Array,
    key: jax.Array,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> tuple[Any, jax.Array]:
    """Generate `length` tokens after `token[*batch]`, starting from `carry`.

    `step(params, carry, token) -> (carry, logits)` is one model step (e.g.
    `TokenModel.step`). Returns `(carry, tokens[length, *batch])`.
    """

    def body(state, key_t):
        carry, token = state
        carry, logits = step(params, carry, token)
        token = next_token(key_t, logits, temperature, top_k).astype(token.dtype)
        return (carry, token), token

    (carry, _), tokens = jax.lax.scan(body, (carry, token), jax.random.split(key, length))
    return carry, tokens
