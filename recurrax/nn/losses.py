r"""Masked losses and metrics for sequence models.

Every function takes an optional boolean (or 0/1) `mask` of the targets' batch
shape and averages over the valid positions only:

    mean_mask(v) = Σ_t m_t v_t / max(Σ_t m_t, 1)

so padding never counts and an all-padding (or empty) batch gives 0, not NaN.

Integer `targets` (class ids) must lie in `[0, V)`, `V` the size of the
logits' class axis, wherever the mask keeps them (padding may hold any id,
e.g. -1). Outside `jit` an id out of range is a `ValueError` naming it;
inside `jit`, with the default `mode="fill"`, the loss (or accuracy) is NaN
and `jax.experimental.checkify` reports the id; `mode="clip"` clamps ids to
`[0, V - 1]` unchecked (see `recurrax.nn._checks`). Float targets are refused:
ids must have an integer dtype.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from recurrax.nn import _checks as _ids


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    if values.size == 0:
        return jnp.zeros((), jnp.result_type(values.dtype, jnp.float32))
    if mask is None:
        return jnp.mean(values)
    _check_mask(mask, values.shape)
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _check_mask(mask: Any, shape: tuple) -> None:
    _ids.check_array("mask", "mask", mask)
    if mask.shape != shape:
        raise ValueError(
            f"mask: got shape {tuple(mask.shape)}, needs the targets' shape {tuple(shape)}"
        )


def _check_targets(logits: jax.Array, targets: jax.Array) -> None:
    _ids.check_array("logits", "logits", logits)
    _ids.check_array("targets", "targets", targets)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits: needs a class axis last of at least 1 class, got shape "
                         f"{tuple(logits.shape)}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"targets: got shape {tuple(targets.shape)}, needs the logits' shape without "
            f"the class axis, {tuple(logits.shape[:-1])}"
        )


def _class_ids(where: str, logits: jax.Array, targets: jax.Array, mask: jax.Array | None,
               mode: str) -> tuple[jax.Array, jax.Array | None]:
    """The ids to gather with (always in range) and where the result must be
    NaN (traced out-of-range ids at kept positions; None when there are none)."""
    _check_targets(logits, targets)
    mode = _ids.check_mode(where, mode)
    _ids.check_integer(where, "targets", targets)
    if mask is not None:
        _check_mask(mask, targets.shape)
    V = logits.shape[-1]
    if mode == "clip":
        return jnp.clip(targets, 0, V - 1), None
    bad = _ids.check_range(where, "targets", targets, V,
                           f"the {V} classes of the logits' last axis", mask, mode)
    return jnp.where((targets >= 0) & (targets < V), targets, 0), bad


def softmax_cross_entropy(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None, *,
    mode: str = "fill",
) -> jax.Array:
    r"""Mean negative log-likelihood of integer `targets[...]` under
    `softmax(logits[..., V])`, in nats:

        ℓ_t = −log softmax(z_t)[y_t] = logsumexp(z_t) − z_t[y_t]

    Targets out of `[0, V)` at kept positions: a `ValueError` on concrete
    arrays; under `jit` NaN (`mode="fill"`, checkify-checked) or clamped
    (`mode="clip"`).
    """
    ids, bad = _class_ids("softmax_cross_entropy", logits, targets, mask, mode)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, ids[..., None].astype(jnp.int32), axis=-1)[..., 0]
    if bad is not None:
        nll = jnp.where(bad, jnp.nan, nll)
    return _masked_mean(nll, mask)


def bernoulli_nll(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    r"""Negative log-likelihood of multi-hot `targets[..., P]` (piano rolls)
    under independent Bernoullis `p = σ(logits)`, summed over the P units and
    averaged over valid time steps (the "NLL per time step" of music models):

        ℓ_t = −Σ_p [y_p log σ(z_p) + (1 − y_p) log(1 − σ(z_p))]

    Targets must lie in `[0, 1]` (0/1, or probabilities): a `ValueError` on
    concrete arrays; under `jit` a `checkify` check (the formula is applied
    as it stands otherwise).
    """
    _ids.check_array("logits", "logits", logits)
    _ids.check_array("targets", "targets", targets)
    if logits.shape != targets.shape:
        raise ValueError(
            f"targets: got shape {tuple(targets.shape)}, needs the logits' shape "
            f"{tuple(logits.shape)}"
        )
    if logits.ndim < 1:
        raise ValueError("logits: needs a unit axis last (shape [..., P]), got a scalar")
    if mask is not None:
        _check_mask(mask, logits.shape[:-1])
    z, y = logits.astype(jnp.float32), targets.astype(jnp.float32)
    if _ids.is_traced(targets) or _ids.is_traced(mask):
        bad = ~((y >= 0) & (y <= 1))
        if mask is not None:
            bad = bad & (jnp.asarray(mask) != 0)[..., None]
        checkify.debug_check(~jnp.any(bad), "bernoulli_nll: targets must lie in [0, 1]")
    else:
        values = np.asarray(targets, np.float64)
        bad = ~((values >= 0) & (values <= 1))
        if mask is not None:
            bad &= (np.asarray(mask) != 0)[..., None]
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"bernoulli_nll: targets must lie in [0, 1] (multi-hot or "
                             f"probabilities); got {values[first]} at targets{list(first)} "
                             f"({int(bad.sum())} position(s) out of range)")
    nll = jnp.sum(y * jax.nn.softplus(-z) + (1.0 - y) * jax.nn.softplus(z), axis=-1)
    return _masked_mean(nll, mask)


def accuracy(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None, *,
             mode: str = "fill") -> jax.Array:
    """Fraction of valid positions where `argmax(logits) == targets`. Targets
    out of `[0, V)` as for `softmax_cross_entropy`: a `ValueError` on concrete
    arrays; under `jit` NaN (`mode="fill"`) or clamped (`mode="clip"`)."""
    ids, bad = _class_ids("accuracy", logits, targets, mask, mode)
    hits = (jnp.argmax(logits, axis=-1) == ids).astype(jnp.float32)
    if bad is not None:
        hits = jnp.where(bad, jnp.nan, hits)
    return _masked_mean(hits, mask)


def bits_per_character(nll_nats: jax.Array | float) -> jax.Array | float:
    """Mean NLL per character in bits: `nll / ln 2`."""
    return nll_nats / math.log(2.0)


def perplexity(nll_nats: jax.Array | float) -> jax.Array | float:
    """`exp(mean NLL per token)`; the paper's per-word probability is its inverse.
    A Python float too large for `exp` gives `inf` (a diverged run), not an
    `OverflowError`; NumPy arrays (of one or more axes) give NumPy arrays."""
    if isinstance(nll_nats, jax.Array):
        return jnp.exp(nll_nats)
    if isinstance(nll_nats, np.ndarray) and nll_nats.ndim > 0:
        with np.errstate(over="ignore"):
            return np.exp(nll_nats)
    try:
        return math.exp(nll_nats)
    except OverflowError:
        return math.inf
