"""Early, readable errors: every check runs in Python on static shapes before
anything is traced, and names the argument, what it got and what it needs."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

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


def check_cell(cell: Any) -> Cell:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"cell: expected a recurrax.Cell (e.g. recurrax.cells.lstm(128)), "
            f"got {type(cell).__name__}"
        )
    return cell


def check_array(name: str, x: Any, min_ndim: int, layout: str) -> jax.Array:
    ndim = np.ndim(x)
    if not hasattr(x, "shape") or ndim < min_ndim:
        raise ValueError(
            f"{name}: expected an array of layout {layout}, got "
            f"{type(x).__name__} of shape {tuple(np.shape(x))}"
        )
    return x


@functools.lru_cache(maxsize=512)
def _expected_param_shapes(cell: Cell, input_size: int) -> dict[str, tuple]:
    abstract = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(0))
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
    """`carry` must have the shapes of `cell.initial_carry(batch_shape)`."""
    expected = _shapes(jax.eval_shape(lambda: cell.initial_carry(batch_shape, dtype)))
    try:
        got = _shapes(carry)
    except Exception:
        got = {"": type(carry).__name__}
    if got != expected:
        raise ValueError(
            f"carry: got {_fmt(got)}, but batch shape {batch_shape} and hidden size "
            f"{cell.hidden_size} need {_fmt(expected)} "
            f"(the structure of cell.initial_carry(batch_shape, dtype))"
        )


def check_lengths(lengths: Any, batch_shape: tuple, T: int) -> jax.Array:
    """`lengths` must be integers of the batch shape, each in `[0, T]`.

    The range is checked whenever the values are concrete; under `jit` they
    are traced and only the shape and dtype can be checked.
    """
    shape = tuple(np.shape(lengths))
    if shape != tuple(batch_shape):
        raise ValueError(
            f"lengths: got shape {shape}, needs the batch shape {tuple(batch_shape)} "
            f"(one length per sequence)"
        )
    dtype = lengths.dtype if hasattr(lengths, "dtype") else np.asarray(lengths).dtype
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"lengths: needs an integer dtype, got {dtype}")
    try:
        values = np.asarray(lengths)
    except jax.errors.TracerArrayConversionError:
        return lengths
    if values.size and (values.min() < 0 or values.max() > T):
        raise ValueError(
            f"lengths: every length must lie in [0, T] = [0, {T}]; got values from "
            f"{values.min()} to {values.max()}"
        )
    return lengths
