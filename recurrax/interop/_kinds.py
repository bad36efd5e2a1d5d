"""The three recurrax cells that PyTorch and Flax also have, told apart by their
params (cells are closures, so a `Cell` cannot say which equations it runs):

| kind  | recurrax cell               | params                                           |
| ----- | --------------------------- | ------------------------------------------------ |
| rnn   | `rnn(H)`                    | `W_xh, W_hh, b_h`                                |
| lstm  | `lstm(H)`                   | `W_x{i,f,g,o}, W_h{i,f,g,o}, b_{i,f,g,o}`        |
| gru   | `gru(H, reset_after=True)`  | `W_x{r,z,h}, W_h{r,z,h}, b_{r,z,h}, b_hh`        |

Gate letters follow recurrax: the GRU's candidate is `h` (PyTorch and Flax
call it `n`). Every `W_x*` is `(D, H)`, every `W_h*` `(H, H)`, every bias
`(H,)`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recurrax import cells
from recurrax.protocols import Cell

#: Each kind's gates, in the order PyTorch and Flax stack them.
GATES: dict[str, tuple[str, ...]] = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"),
                                     "gru": ("r", "z", "h")}
#: How each kind is built in recurrax (for messages).
BUILDERS: dict[str, str] = {"rnn": "recurrax.cells.rnn(H)", "lstm": "recurrax.cells.lstm(H)",
                            "gru": "recurrax.cells.gru(H, reset_after=True)"}


def input_kernels(kind: str) -> list[str]:
    return [f"W_x{g}" for g in GATES[kind]]


def recurrent_kernels(kind: str) -> list[str]:
    return [f"W_h{g}" for g in GATES[kind]]


def biases(kind: str) -> list[str]:
    """The biases of the fused input projection (the GRU's `b_hh` is not one)."""
    return ["b_h"] if kind == "rnn" else [f"b_{g}" for g in GATES[kind]]


def keys(kind: str) -> frozenset[str]:
    extra = ["b_hh"] if kind == "gru" else []
    return frozenset(input_kernels(kind) + recurrent_kernels(kind) + biases(kind) + extra)


def build(kind: str, hidden_size: int) -> Cell:
    """The recurrax cell of `kind`."""
    if kind == "gru":
        return cells.gru(hidden_size, reset_after=True)
    return cells.rnn(hidden_size) if kind == "rnn" else cells.lstm(hidden_size)


@functools.lru_cache(maxsize=1)
def _other_cells() -> dict[frozenset[str], list[str]]:
    """The param keys of every other built-in cell (`cells.get` names), to say
    which recurrax cell unconvertible params came from."""
    found: dict[frozenset[str], list[str]] = {}
    convertible = {keys(kind) for kind in GATES}
    for name in (*cells.NAMES, *cells.LINEAR_NAMES):
        shapes = jax.eval_shape(lambda k, n=name: cells.get(n, 4).init(k, 4), jax.random.key(0))
        key_set = frozenset(shapes)
        if key_set not in convertible:
            label = "gru (reset_after=False)" if name == "gru" else name
            found.setdefault(key_set, []).append(label)
    return found


def infer_kind(params: Any, where: str, target: str) -> str:
    """The kind whose param names `params` has; a `ValueError` that names the
    recurrax cell the params belong to when `target` has no such cell."""
    if not isinstance(params, Mapping):
        raise TypeError(f"{where}: a cell's params must be a dict of arrays, got "
                        f"{type(params).__name__}")
    got = frozenset(map(str, params))
    for kind in GATES:
        if got == keys(kind):
            return kind
    convertible = "; ".join(f"{BUILDERS[k]} [{', '.join(sorted(keys(k)))}]" for k in GATES)
    names = _other_cells().get(got)
    if names:
        raise ValueError(
            f"{where}: these are the params of recurrax's {' or '.join(names)} "
            f"[{', '.join(sorted(got))}], which {target} has no cell for (converted are: "
            f"{convertible})"
        )
    raise ValueError(
        f"{where}: params [{', '.join(sorted(got))}] are not those of a cell {target} has; "
        f"converted are: {convertible}"
    )


def sizes(params: Mapping[str, Any], kind: str, where: str) -> tuple[int, int]:
    """`(D, H)` read from the params of `kind`, every shape checked against them."""
    first = params[input_kernels(kind)[0]]
    if np.ndim(first) != 2:
        raise ValueError(f"{where}: {input_kernels(kind)[0]} must be a (D, H) matrix, got "
                         f"shape {tuple(np.shape(first))}")
    D, H = (int(n) for n in np.shape(first))
    expected = {name: (D, H) for name in input_kernels(kind)}
    expected |= {name: (H, H) for name in recurrent_kernels(kind)}
    expected |= {name: (H,) for name in keys(kind) if name.startswith("b_")}
    wrong = [f"{k} has shape {tuple(np.shape(params[k]))}, needs {v}"
             for k, v in sorted(expected.items()) if tuple(np.shape(params[k])) != v]
    if wrong:
        raise ValueError(f"{where}: the params do not fit one {kind} cell of {D} inputs and "
                         f"{H} units: {'; '.join(wrong)}")
    return D, H


def check_cell(cell: Any, params: Mapping[str, Any], kind: str, where: str) -> None:
    """`cell` must be a `Cell` of the params' hidden size that computes the
    equations of `kind`: one step from a random carry and input is compared
    with the reference cell, as a traced program, else by its numbers (a
    conversion reads the kind from the params, so a cell with other equations
    and the same param names would be converted wrongly)."""
    if not isinstance(cell, Cell):
        raise TypeError(f"{where}: expected a recurrax.Cell, got {type(cell).__name__}")
    D, H = sizes(params, kind, where)
    if cell.hidden_size != H:
        raise ValueError(f"{where}: the cell has hidden_size {cell.hidden_size}, but the "
                         f"params are those of a {kind} with {H} units")
    reference = build(kind, H)
    dtype = jnp.result_type(*params.values())
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, D)), dtype)
    carry = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), dtype),
                         reference.initial_carry((2,), dtype))

    def one_step(c: Cell):
        return lambda p, h, v: c.step(p, h, c.prepare(p, v))

    try:  # the same program (jaxpr, traced only) computes the same
        got = str(jax.make_jaxpr(one_step(cell))(params, carry, x))
    except Exception as error:
        raise ValueError(f"{where}: the cell fails on the params of {BUILDERS[kind]} "
                         f"({type(error).__name__}: {error}); pass the cell they were made "
                         f"for") from error
    if got == str(jax.make_jaxpr(one_step(reference))(params, carry, x)):
        return
    want = one_step(reference)(params, carry, x)  # else: the same numbers, to rounding
    got = one_step(cell)(params, carry, x)
    same = jax.tree.structure(got) == jax.tree.structure(want) and all(
        np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True))
    if not same:
        raise ValueError(
            f"{where}: the cell does not compute the {kind} equations of {BUILDERS[kind]} with "
            f"these params (one step from a random carry differs); the kind is read from the "
            f"params' names, so pass the cell they were made for"
        )
