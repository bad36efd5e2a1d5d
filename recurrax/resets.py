"""Reset the carry in the middle of a sequence, where a document ends.

Truncated BPTT over a long stream hands the carry from one chunk to the next,
but a new document must start from the zero state even when it begins inside a
chunk. `with_resets(cell)` is a cell that reads one extra input feature, the
flag `r_t`, and zeroes the carry before step t where `r_t = 1`:

    carry_t ← (1 − r_t) · carry_t,    then the cell's own step on x_t

Its params are the wrapped cell's own (`init(key, D + 1)` is `cell.init(key, D)`),
so a model trained with resets runs without them, and the other way round;
`init` needs `input_size >= 2` (at least one feature besides the flag).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from recurrax import _checks as checks
from recurrax.protocols import Cell


def append_flags(xs: jax.Array, resets: jax.Array) -> jax.Array:
    """`[..., D]` features and `[...]` 0/1 flags -> `[..., D + 1]` inputs of `with_resets`."""
    checks.check_array("append_flags: xs", xs, 1, "[..., D]")
    if not hasattr(resets, "shape") or tuple(resets.shape) != tuple(xs.shape[:-1]):
        raise ValueError(
            f"append_flags: resets must have the shape of xs without its last axis, "
            f"{tuple(xs.shape[:-1])}; got {tuple(np.shape(resets))}"
        )
    return jnp.concatenate([xs, resets[..., None].astype(xs.dtype)], axis=-1)


def with_resets(cell: Cell) -> Cell:
    """The cell `cell`, with its carry zeroed wherever the last input feature is 1.

    Assumes the cell starts from zeros (`initial_carry`), true of every
    built-in cell.
    """

    checks.check_cell(cell)

    def init(key: jax.Array, input_size: int):
        input_size = checks.check_size("with_resets: input_size", input_size, minimum=2)
        return cell.init(key, input_size - 1)

    def prepare(params, xs: jax.Array) -> jax.Array:
        px = cell.prepare(params, xs[..., :-1])
        return jnp.concatenate([px, xs[..., -1:].astype(px.dtype)], axis=-1)

    def step(params, carry, px: jax.Array):
        keep = 1.0 - px[..., -1:]
        carry = jax.tree.map(lambda c: c * keep.astype(c.dtype), carry)
        return cell.step(params, carry, px[..., :-1])

    return Cell(init, cell.initial_carry, prepare, step, cell.hidden_size)
