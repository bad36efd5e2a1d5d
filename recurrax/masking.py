"""Helpers for variable-length batches, in the `lengths` convention of `scan`:
row b is valid at steps `0 <= t < lengths[b]`."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def broadcast_mask(valid: jax.Array, like: jax.Array) -> jax.Array:
    """Reshape a boolean `valid[*batch]` to broadcast against `like[*batch, ...]`."""
    return valid.reshape(valid.shape + (1,) * (like.ndim - valid.ndim))


def sequence_mask(lengths: jax.Array, T: int, time_major: bool = True) -> jax.Array:
    """`mask[t, *batch] = t < lengths[*batch]` (or `[*batch, T]`)."""
    lengths = jnp.asarray(lengths)
    t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
    mask = t < lengths
    return mask if time_major else jnp.moveaxis(mask, 0, -1)


def reverse_sequence(
    xs: jax.Array, lengths: jax.Array | None = None, time_major: bool = True
) -> jax.Array:
    """Reverse each row within its own length, leaving the padding in place:

        out[t, b] = xs[lengths[b] − 1 − t, b]   for t < lengths[b]
        out[t, b] = xs[t, b]                    otherwise

    With `lengths=None` the whole time axis is reversed. `xs` is
    `[T, *batch, D]` (or `[*batch, T, D]` with `time_major=False`), the layout
    of `scan`. The map is its own inverse.
    """
    time_axis = 0 if time_major else jnp.ndim(xs) - 2
    if lengths is None:
        return jnp.flip(xs, axis=time_axis)
    lengths = jnp.asarray(lengths)
    x = jnp.moveaxis(xs, time_axis, 0)
    T = x.shape[0]
    t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
    source = jnp.where(t < lengths, lengths - 1 - t, t)  # [T, *batch]
    source = source.reshape(source.shape + (1,) * (x.ndim - source.ndim))
    out = jnp.take_along_axis(x, jnp.broadcast_to(source, x.shape), axis=0)
    return jnp.moveaxis(out, 0, time_axis)
