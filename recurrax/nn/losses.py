r"""Masked losses and metrics for sequence models.

Every function takes an optional boolean (or 0/1) `mask` of the targets' batch
shape and averages over the valid positions only:

    mean_mask(v) = Σ_t m_t v_t / max(Σ_t m_t, 1)

so padding never counts and an all-padding batch gives 0, not NaN.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(values)
    if mask.shape != values.shape:
        raise ValueError(
            f"mask: got shape {tuple(mask.shape)}, needs the targets' shape {tuple(values.shape)}"
        )
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _check_targets(logits: jax.Array, targets: jax.Array) -> None:
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"targets: got shape {tuple(targets.shape)}, needs the logits' shape without "
            f"the class axis, {tuple(logits.shape[:-1])}"
        )


def softmax_cross_entropy(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    r"""Mean negative log-likelihood of integer `targets[...]` under
    `softmax(logits[..., V])`, in nats:

        ℓ_t = −log softmax(z_t)[y_t] = logsumexp(z_t) − z_t[y_t]
    """
    _check_targets(logits, targets)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return _masked_mean(nll, mask)


def bernoulli_nll(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    r"""Negative log-likelihood of multi-hot `targets[..., P]` (piano rolls)
    under independent Bernoullis `p = σ(logits)`, summed over the P units and
    averaged over valid time steps (the "NLL per time step" of music models):

        ℓ_t = −Σ_p [y_p log σ(z_p) + (1 − y_p) log(1 − σ(z_p))]
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"targets: got shape {tuple(targets.shape)}, needs the logits' shape "
            f"{tuple(logits.shape)}"
        )
    z, y = logits.astype(jnp.float32), targets.astype(jnp.float32)
    nll = jnp.sum(y * jax.nn.softplus(-z) + (1.0 - y) * jax.nn.softplus(z), axis=-1)
    return _masked_mean(nll, mask)


def accuracy(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Fraction of valid positions where `argmax(logits) == targets`."""
    _check_targets(logits, targets)
    hits = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return _masked_mean(hits, mask)


def bits_per_character(nll_nats: jax.Array | float) -> jax.Array | float:
    """Mean NLL per character in bits: `nll / ln 2`."""
    return nll_nats / math.log(2.0)


def perplexity(nll_nats: jax.Array | float) -> jax.Array | float:
    """`exp(mean NLL per token)`; the paper's per-word probability is its inverse."""
    return jnp.exp(nll_nats) if isinstance(nll_nats, jax.Array) else math.exp(nll_nats)
