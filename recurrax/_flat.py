"""A carry pytree as one flat vector per row, and back.

A carry's leaves all have the batch axes first and one feature axis last
(`h`, or `(c, h)` for the LSTM); `ravel` puts the leaves side by side,
`[*batch, K]` with K the sum of their widths (the last leaf, the hidden part
of the built-in cells, last), and `unraveler(carry)` returns the inverse for
carries of that structure, any leading axes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from recurrax.protocols import Carry


def ravel(carry: Carry) -> jax.Array:
    """The carry's leaves side by side: `[*batch, K]`, the hidden part last."""
    return jnp.concatenate(jax.tree.leaves(carry), axis=-1)


def unraveler(carry: Carry) -> Callable[[jax.Array], Carry]:
    """The inverse of `ravel` for carries shaped like `carry` (each leaf back
    in its own dtype), on any leading axes."""
    leaves, treedef = jax.tree.flatten(carry)
    ends = list(itertools.accumulate(leaf.shape[-1] for leaf in leaves))[:-1]
    dtypes = [leaf.dtype for leaf in leaves]

    def unravel(s: jax.Array) -> Carry:
        parts = jnp.split(s, ends, axis=-1)
        return jax.tree.unflatten(treedef, [p.astype(d) for p, d in zip(parts, dtypes,
                                                                         strict=True)])
    return unravel
