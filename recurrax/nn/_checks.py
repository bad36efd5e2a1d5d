"""Early checks for `recurrax.nn`: sizes, flags, and integer ids (tokens,
class targets) with the range they must lie in.

Outside `jit` (concrete arrays) an id outside `[0, size)` is a `ValueError`
naming the argument, the first bad position and value, and the valid range.
Inside `jit` the values are unknown when the function is traced, so the
caller's `mode` says what happens:

* `"fill"` (the default): the result at every out-of-range id (negative ids
  too, which are never wrapped around) is NaN, so a loss or metric built on
  it is NaN and a training loop sees a diverged step instead of a plausible
  wrong number; and the check is a `jax.experimental.checkify` check, so
  `checkify.checkify(f, errors=checkify.user_checks)` reports the first bad
  value as an error.
* `"clip"`: ids are clamped to `[0, size - 1]` and never checked (a choice
  the caller makes explicitly).

Positions where a `mask` is 0 are never read: any id may stand there (such
as -1 for padding).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from recurrax._checks import is_traced

MODES = ("fill", "clip")


def check_size(where: str, name: str, value: Any, minimum: int = 1) -> int:
    """`value` as a Python int `>= minimum`; NumPy integers are accepted,
    bools, floats and strings are a `TypeError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int >= {minimum}, got "
                        f"{type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {int(value)}")
    return int(value)


def check_flag(where: str, name: str, value: Any) -> bool:
    """`value` as a Python bool; a `TypeError` for anything else (a string such
    as "no" is truthy). NumPy bools are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{where}: {name} must be True or False, got {type(value).__name__} "
                    f"{value!r}")


def check_mode(where: str, mode: Any) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"{where}: mode must be one of {MODES}, got {mode!r}")
    return mode


def check_array(where: str, name: str, x: Any) -> Any:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{where}: {name} must be an array, got {type(x).__name__}; wrap it "
                        f"with jnp.asarray(...)")
    return x


def check_integer(where: str, name: str, ids: Any) -> Any:
    check_array(where, name, ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{where}: {name} must be integers (ids), got dtype {ids.dtype}; cast "
                         f"with .astype(jnp.int32) if the values are whole numbers")
    return ids


def _concrete(x: Any) -> np.ndarray | None:
    return None if is_traced(x) else np.asarray(x)


def check_range(where: str, name: str, ids: Any, size: int, what: str, mask: Any = None,
                mode: str = "fill") -> jax.Array | None:
    """Refuse concrete ids outside `[0, size)` at positions `mask` keeps;
    return the traced "bad position" array for the caller to fill (None when
    nothing is traced or `mode` is "clip")."""
    if mode == "clip":
        return None
    values = _concrete(ids)
    keep = None if mask is None else _concrete(mask)
    if values is not None and (mask is None or keep is not None):
        bad = (values < 0) | (values >= size)
        if keep is not None:
            bad &= np.asarray(keep) != 0
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            at = f"{name}[{', '.join(map(str, first))}]" if first else name
            raise ValueError(
                f"{where}: {name} must lie in [0, {size}) ({what}); {int(bad.sum())} "
                f"out of range (from {values[bad].min()} to {values[bad].max()}), the first "
                f"{at} = {values[first]}; check the vocabulary size, or pass mode='clip' to "
                f"clamp ids")
        return None
    ids = jnp.asarray(ids)
    bad = (ids < 0) | (ids >= size)
    if mask is not None:
        bad = bad & (jnp.asarray(mask) != 0)
    checkify.debug_check(~jnp.any(bad), f"{where}: {name} must lie in [0, {size}) ({what}); "
                         f"got {{}} out of range, e.g. {{}}",
                         jnp.sum(bad), jnp.max(jnp.where(bad, ids, jnp.iinfo(ids.dtype).min)))
    return bad
