"""Helpers for variable-length batches, in the `lengths` convention of `scan`:
row b is valid at steps `0 <= t < lengths[b]`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def broadcast_mask(valid: jax.Array, like: jax.Array) -> jax.Array:
    """Reshape a boolean `valid[*batch]` to broadcast against `like[*batch, ...]`."""
    return valid.reshape(valid.shape + (1,) * (like.ndim - valid.ndim))


def sequence_mask(lengths: jax.Array, T: int, time_major: bool = True) -> jax.Array:
    """`mask[t, *batch] = t < lengths[*batch]` (or `[*batch, T]`).

    `lengths` are integers (any shape: the batch shape), `T >= 0` an int
    (NumPy integers accepted). Lengths outside `[0, T]` are allowed here (a
    length above `T` marks every step valid, a negative one none)."""
    from recurrax import _checks as checks  # _checks imports protocols; keep this module light

    T = checks.check_size("sequence_mask: T", T, minimum=0)
    time_major = checks.check_flag("sequence_mask: time_major", time_major)
    _check_integer_lengths("sequence_mask", lengths)
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
    from recurrax import _checks as checks

    time_major = checks.check_flag("reverse_sequence: time_major", time_major)
    layout = "[T, *batch, D]" if time_major else "[*batch, T, D]"
    checks.check_array("reverse_sequence: xs", xs, 2, layout)
    time_axis = 0 if time_major else jnp.ndim(xs) - 2
    if lengths is None:
        return jnp.flip(xs, axis=time_axis)
    batch_shape = tuple(s for i, s in enumerate(jnp.shape(xs)[:-1]) if i != time_axis)
    lengths = jnp.asarray(checks.check_lengths(lengths, batch_shape, jnp.shape(xs)[time_axis],
                                               where="reverse_sequence: "))
    x = jnp.moveaxis(xs, time_axis, 0)
    T = x.shape[0]
    t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
    source = jnp.where(t < lengths, lengths - 1 - t, t)  # [T, *batch]
    source = source.reshape(source.shape + (1,) * (x.ndim - source.ndim))
    out = jnp.take_along_axis(x, jnp.broadcast_to(source, x.shape), axis=0)
    return jnp.moveaxis(out, 0, time_axis)


def _check_integer_lengths(where: str, lengths) -> None:
    dtype = getattr(lengths, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(lengths).dtype
        except Exception:
            dtype = None
    if dtype is None or not np.issubdtype(dtype, np.integer):
        raise TypeError(f"{where}: lengths must be integers, got "
                        f"{type(lengths).__name__}{f' of dtype {dtype}' if dtype else ''}")
