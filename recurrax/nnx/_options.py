"""What the Flax wrappers (`recurrax.nnx`, `recurrax.linen`) share: the
checked options of `recurrax.scan`, and how a cell's params are split into
named entries, trained (floating) or held fixed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax import _checks as checks
from recurrax._deferred import WeightGrads, check_weight_grads

#: the one entry a cell's params become when they are not a dict of named entries
WHOLE = "params"


class ScanOptions(NamedTuple):
    """`recurrax.scan`'s keyword options, checked (`scan_options`)."""

    time_major: bool
    reverse: bool
    unroll: int | bool
    remat: bool
    hoist: bool | None
    weight_grads: WeightGrads

    def kwargs(self, reverse: bool | None = None) -> dict[str, Any]:
        """The options as `scan`'s keywords; `reverse`, when given, replaces the stored one."""
        return self._replace(reverse=self.reverse if reverse is None else reverse)._asdict()


def scan_options(where: str, *, time_major: Any, reverse: Any, unroll: Any, remat: Any,
                 hoist: Any, weight_grads: Any) -> ScanOptions:
    """The options, each checked by `recurrax._checks` (`TypeError` for a
    flag that is not a bool, `ValueError` for `unroll < 1` or an unknown
    `weight_grads`), messages prefixed by `where`."""
    return ScanOptions(
        time_major=checks.check_flag(f"{where}: time_major", time_major),
        reverse=checks.check_flag(f"{where}: reverse", reverse),
        unroll=checks.check_unroll(unroll),
        remat=checks.check_flag(f"{where}: remat", remat),
        hoist=checks.check_flag(f"{where}: hoist", hoist, allow_none=True),
        weight_grads=check_weight_grads(where, weight_grads),
    )


def is_named(params: Any) -> bool:
    """Whether `params` is a dict of named entries (every built-in cell's)."""
    return isinstance(params, Mapping) and all(isinstance(k, str) for k in params)


def entries(params: Any) -> dict[str, Any]:
    """The cell's params as named entries: the dict itself, or `{WHOLE: params}`."""
    return dict(params) if is_named(params) else {WHOLE: params}


def from_entries(values: Mapping[str, Any], named: bool) -> Any:
    """The inverse of `entries`."""
    return dict(values) if named else values[WHOLE]


def is_trainable(value: Any) -> bool:
    """Whether an entry is trained: a nonempty pytree of floating arrays. An
    entry with an integer leaf (such as the universal cell's `program`) is
    held fixed, since it cannot be differentiated."""
    leaves = jax.tree.leaves(value)
    return bool(leaves) and all(
        hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating) for leaf in leaves)


def wants_carry(where: str, return_carry: Any, default: bool) -> bool:
    """Whether a call returns `(carry, ys)`: `return_carry` (a bool), `None` meaning `default`."""
    return default if return_carry is None else checks.check_flag(f"{where}: return_carry",
                                                                  return_carry)
