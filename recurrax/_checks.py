"""Early, readable errors: every check runs in Python on static shapes before
anything is traced, and names the argument, what it got and what it needs."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from recurrax.protocols import Cell


def _shapes(tree: Any) -> dict[str, tuple]:
    """`{"['W_xi']": (D, H), ...}`: each leaf's path, as `keystr` writes it, and shape."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in leaves}


def _names(paths) -> str:
    """`['W_xi']`-style paths as a readable list: `W_xi, W_xf`."""
    return ", ".join(sorted(p.replace("['", "").replace("']", "/").rstrip("/") for p in paths))


def _fmt(shapes: Mapping[str, object]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in shapes.items()) + "}"


def check_flag(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """`value` as a Python bool (`None` kept where `allow_none`); a `TypeError`
    for anything else (a string such as `"no"` is truthy, so it would silently
    mean `True`). NumPy bools are accepted."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    expected = "True, False or None" if allow_none else "True or False"
    raise TypeError(f"{name}: expected a bool ({expected}), got {type(value).__name__} {value!r}")


def check_size(name: str, value: Any, *, minimum: int = 1) -> int:
    """`value` as a Python int `>= minimum`. NumPy integers are accepted; bools,
    floats (even `8.0`) and strings are a `TypeError`, an int below `minimum`
    a `ValueError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        hint = f" (use {int(value)})" if isinstance(value, float) and value.is_integer() else ""
        raise TypeError(
            f"{name}: expected an int >= {minimum}, got {type(value).__name__} {value!r}{hint}"
        )
    if value < minimum:
        raise ValueError(f"{name}: must be an int >= {minimum}, got {int(value)}")
    return int(value)


def is_traced(x: Any) -> bool:
    """Whether `x` is a tracer (its values unknown until the program runs)."""
    return isinstance(x, Tracer)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """`value`, one of the strings `choices`; anything else (other kinds
    included) a `ValueError` naming the choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_real(name: str, value: Any, *, minimum: float | None = None,
               strict: bool = False) -> float:
    """`value` as a finite Python float, `>= minimum` (`> minimum` with
    `strict`) when a minimum is given. Ints and NumPy reals are accepted; bools
    and other kinds are a `TypeError`, NaN, inf or a value out of range a
    `ValueError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    value = float(value)
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return value


def check_unroll(value: Any) -> int | bool:
    """`scan`'s `unroll`: a bool, or an int >= 1 (NumPy integers accepted)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"unroll: expected a positive int or a bool, got {type(value).__name__} {value!r}"
        )
    if value < 1:
        raise ValueError(f"unroll: expected a positive int or a bool, got {int(value)}")
    return int(value)


def check_cell(cell: Any) -> Cell:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"cell: expected a recurrax.Cell (e.g. recurrax.cells.lstm(128)), "
            f"got {type(cell).__name__}"
        )
    H = cell.hidden_size
    if isinstance(H, (bool, np.bool_)) or not isinstance(H, (int, np.integer)) or H < 1:
        raise TypeError(
            f"cell.hidden_size: must be a positive int {_PROTOCOL}, got "
            f"{type(H).__name__} {H!r}"
        )
    return cell


def check_array(name: str, x: Any, min_ndim: int, layout: str) -> jax.Array:
    """`x` must be an array (a `jax.Array`, NumPy array or tracer) of at least
    `min_ndim` axes with a real or integer dtype."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(
            f"{name}: expected an array of layout {layout} (a jax or NumPy array), got "
            f"{type(x).__name__}; wrap it with jnp.asarray(...)"
        )
    ndim = np.ndim(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(
            f"{name}: expected a real (float or int) array of layout {layout}, got dtype "
            f"{x.dtype}"
        )
    if ndim < min_ndim:
        raise ValueError(
            f"{name}: expected an array of layout {layout}, got "
            f"{type(x).__name__} of shape {tuple(np.shape(x))}"
        )
    return x


@functools.lru_cache(maxsize=512)
def _expected_param_shapes(cell: Cell, input_size: int) -> dict[str, tuple]:
    # The key is made inside eval_shape's own trace: made outside, under a
    # caller's jit, its random_seed op would be staged into the caller's program.
    abstract = jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size))
    return _shapes(abstract)


def check_params(cell: Cell, params: Any, input_size: int, what: str) -> None:
    """`params` must have exactly the shapes `cell.init(key, input_size)` makes.

    Raises the cell's own `ValueError` when it refuses that input size (MUT1
    and MUT2 with `D != H`).
    """
    expected = _expected_param_shapes(cell, int(input_size))
    got = _shapes(params)
    if got == expected:
        return
    if got.keys() != expected.keys():
        missing, unexpected = expected.keys() - got.keys(), got.keys() - expected.keys()
        raise ValueError(
            f"params: do not fit this cell (hidden size {cell.hidden_size}): "
            f"missing [{_names(missing)}], unexpected [{_names(unexpected)}]; expected "
            f"the entries of cell.init(key, {input_size}): [{_names(expected)}]"
        )
    wrong = {k: (got[k], expected[k]) for k in got if got[k] != expected[k]}
    details = "; ".join(f"params{k} has shape {g}, needs {e}" for k, (g, e) in wrong.items())
    raise ValueError(
        f"{what} has {input_size} input features on its last axis, and the params "
        f"do not fit a cell of hidden size {cell.hidden_size} on {input_size} inputs: "
        f"{details}"
    )


def check_carry(cell: Cell, carry: Any, batch_shape: tuple, dtype) -> None:
    """`carry` must have the structure and shapes of
    `cell.initial_carry(batch_shape, dtype)`."""
    check_initial_carry_signature(cell)
    template = jax.eval_shape(lambda: cell.initial_carry(batch_shape, dtype))
    expected = _shapes(template)
    try:
        got = _shapes(carry)
    except Exception:
        got = {"": type(carry).__name__}
    if got == expected and jax.tree.structure(carry) != jax.tree.structure(template):
        raise TypeError(
            f"carry: got a {type(carry).__name__}, but cell.initial_carry gives a "
            f"{type(template).__name__} of the same shapes; pass "
            f"{type(template).__name__}(carry)"
        )
    if got != expected:
        raise ValueError(
            f"carry: got {_fmt(got)}, but batch shape {batch_shape} and hidden size "
            f"{cell.hidden_size} need {_fmt(expected)} "
            f"(the structure of cell.initial_carry(batch_shape, dtype))"
        )


def check_lengths(lengths: Any, batch_shape: tuple, T: int, where: str = "") -> jax.Array:
    """`lengths` must be integers of the batch shape, each in `[0, T]`.

    The range is checked whenever the values are concrete; under `jit` they
    are traced and only the shape and dtype can be checked.
    """
    shape = tuple(np.shape(lengths))
    if shape != tuple(batch_shape):
        raise ValueError(
            f"{where}lengths: got shape {shape}, needs the batch shape {tuple(batch_shape)} "
            f"(one length per sequence)"
        )
    dtype = lengths.dtype if hasattr(lengths, "dtype") else np.asarray(lengths).dtype
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{where}lengths: needs an integer dtype, got {dtype}")
    if is_traced(lengths):
        return lengths
    values = np.asarray(lengths)
    if values.size and (values.min() < 0 or values.max() > T):
        raise ValueError(
            f"{where}lengths: every length must lie in [0, T] = [0, {T}]; got values from "
            f"{values.min()} to {values.max()}"
        )
    return lengths


# The Cell protocol (recurrax/protocols.py), checked on abstract values before
# anything runs, so that a custom cell that breaks it gets a message naming the
# rule instead of an error from deep inside `lax.scan`.

_PROTOCOL = "(the Cell protocol, recurrax/protocols.py)"


def check_initial_carry_signature(cell: Cell) -> None:
    """`cell.initial_carry` must accept `(batch_shape, dtype)`."""
    try:
        signature = inspect.signature(cell.initial_carry)
    except (TypeError, ValueError):  # a builtin or other callable without a signature
        return
    try:
        signature.bind((), jnp.float32)
    except TypeError:
        raise TypeError(
            f"cell.initial_carry: must accept (batch_shape, dtype) {_PROTOCOL}; this one's "
            f"signature is {signature}. Add a dtype argument, e.g. "
            f"`def initial_carry(batch_shape=(), dtype=jnp.float32)`"
        ) from None


def _leaf_types(tree: Any) -> list[tuple[tuple, Any]]:
    return [(tuple(np.shape(leaf)), getattr(leaf, "dtype", None)) for leaf in jax.tree.leaves(tree)]


def check_initial_carry(cell: Cell, carry: Any, batch_shape: tuple) -> None:
    """What `cell.initial_carry(batch_shape, dtype)` returned: a pytree of
    arrays (an array, or a tuple of them) with the leading batch axes."""
    leaves = jax.tree.leaves(carry)
    if not leaves or any(not hasattr(leaf, "shape") for leaf in leaves):
        raise TypeError(
            f"cell.initial_carry: must return an array or a tuple of arrays {_PROTOCOL}, "
            f"got {type(carry).__name__}"
        )
    bad = [tuple(leaf.shape) for leaf in leaves
           if tuple(leaf.shape[:len(batch_shape)]) != tuple(batch_shape)]
    if bad:
        raise ValueError(
            f"cell.initial_carry: every array of the carry must start with the batch axes "
            f"{tuple(batch_shape)} {_PROTOCOL}; initial_carry({tuple(batch_shape)}, dtype) gave "
            f"shapes {bad}"
        )


def check_prepare(cell: Cell, params: Any, x: Any) -> Any:
    """`cell.prepare(params, x)` on abstract values; its outputs must keep the
    leading axes of `x` (`[*batch, D] -> [*batch, K]`). Returns them."""
    px = jax.eval_shape(cell.prepare, params, x)
    leaves = jax.tree.leaves(px)
    lead = tuple(x.shape[:-1])
    bad = [tuple(leaf.shape) for leaf in leaves if tuple(leaf.shape[:len(lead)]) != lead]
    if not leaves or bad:
        raise ValueError(
            f"cell.prepare: must keep the leading axes of its input ([*batch, D] -> "
            f"[*batch, K]) {_PROTOCOL}; on an input of shape {tuple(x.shape)} it gave "
            f"{bad or 'no arrays'}"
        )
    return px


def check_result_dtype(px: Any, x_dtype: Any) -> Any:
    """The dtype `prepare` computes in (inputs and params promoted together),
    which must be floating: integer params would reach the gates' sigmoid."""
    dtype = jax.tree.leaves(px)[0].dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"params: the cell computes in {dtype} (inputs {x_dtype} with the params' dtypes); "
            f"it needs floating params: cast them, e.g. "
            f"jax.tree.map(lambda a: a.astype(jnp.float32), params)"
        )
    return dtype


def check_step(cell: Cell, params: Any, carry: Any, px: Any, batch_shape: tuple,
               *, same_dtypes: bool = True) -> tuple[Any, Any]:
    """`cell.step(params, carry, px)` on abstract values must return a pair
    `(carry, y)`: the carry of the same structure and shapes (and dtypes,
    with `same_dtypes`) as the one given, `y` of shape `[*batch, hidden_size]`.
    Returns that pair (abstract)."""
    out = jax.eval_shape(cell.step, params, carry, px)
    check_step_output(cell, carry, out, batch_shape, same_dtypes=same_dtypes)
    return out


def check_step_output(cell: Cell, carry: Any, out: Any, batch_shape: tuple,
                      *, same_dtypes: bool = True) -> None:
    """The checks of `check_step` on an output `out` already computed."""
    if not isinstance(out, tuple) or len(out) != 2:
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise TypeError(
            f"cell.step: must return a pair (carry, y) {_PROTOCOL}, got {got}"
        )
    new_carry, y = out
    before, after = jax.tree.structure(carry), jax.tree.structure(new_carry)
    if before != after:
        hint = ""
        if isinstance(carry, list) or isinstance(new_carry, list):
            hint = " (a carry of several arrays must be a tuple, in initial_carry and step alike)"
        raise TypeError(
            f"cell.step: must return a carry of the structure it was given {_PROTOCOL}; "
            f"given {before}, returned {after}{hint}"
        )
    old_types, new_types = _leaf_types(carry), _leaf_types(new_carry)
    for (old_shape, old_dtype), (new_shape, new_dtype) in zip(old_types, new_types, strict=True):
        if old_shape != new_shape or (same_dtypes and old_dtype != new_dtype):
            raise ValueError(
                f"cell.step: must return a carry of the shapes and dtypes it was given "
                f"{_PROTOCOL}; given {[(s, str(d)) for s, d in old_types]}, returned "
                f"{[(s, str(d)) for s, d in new_types]}"
            )
    expected = (*tuple(batch_shape), cell.hidden_size)
    if not hasattr(y, "shape") or tuple(y.shape) != expected:
        got = tuple(y.shape) if hasattr(y, "shape") else type(y).__name__
        raise ValueError(
            f"cell.step: must output y of shape [*batch, hidden_size] = {expected} "
            f"{_PROTOCOL}, got {got}; is the cell's hidden_size ({cell.hidden_size}) right?"
        )
