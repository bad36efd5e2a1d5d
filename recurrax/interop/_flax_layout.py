"""Where each Flax recurrent cell keeps the arrays of recurrax's params, as
pure array functions on nested dicts (a linen cell's `variables["params"]`,
an NNX cell's `nnx.state(cell, nnx.Param).to_pure_dict()`).

Flax computes row vectors `x @ kernel + bias` as recurrax does, so kernels
and biases are recurrax's arrays themselves, one per gate (linen, NNX
`LSTMCell`) or the gates concatenated along the last axis (NNX
`OptimizedLSTMCell`, `GRUCell`, `SimpleCell`'s single blocks). Flax puts one
bias per gate where recurrax has one: the LSTM's on the recurrent Dense
(`h{g}.bias = b_g`), the GRU's and simple cell's on the input Dense; the
linen GRU's candidate has `hn.bias = b_hh` inside `r ⊙ (·)`, the NNX GRU has
no recurrent bias at all (`b_hh = 0`). Gate letters: Flax's GRU candidate
`n` is recurrax's `h`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np


class Layout(NamedTuple):
    kind: str  # "rnn", "lstm" or "gru" (_kinds)
    # (module name, array name) -> the recurrax params concatenated along the last axis
    fields: tuple[tuple[tuple[str, str], tuple[str, ...]], ...]
    absent: tuple[str, ...] = ()  # recurrax params this Flax cell lacks (always 0)


def _lstm(input_prefix: dict[str, str]) -> Layout:
    fields = []
    for g in "ifgo":
        fields += [((input_prefix.get(g, f"i{g}"), "kernel"), (f"W_x{g}",)),
                   ((f"h{g}", "kernel"), (f"W_h{g}",)), ((f"h{g}", "bias"), (f"b_{g}",))]
    return Layout("lstm", tuple(fields))


_LSTM_NNX_FUSED = Layout("lstm", (
    (("dense_i", "kernel"), tuple(f"W_x{g}" for g in "ifgo")),
    (("dense_h", "kernel"), tuple(f"W_h{g}" for g in "ifgo")),
    (("dense_h", "bias"), tuple(f"b_{g}" for g in "ifgo")),
))
_GRU_LINEN = Layout("gru", tuple(
    [((f"i{f}", "kernel"), (f"W_x{r}",)) for f, r in zip("rzn", "rzh", strict=True)]
    + [((f"h{f}", "kernel"), (f"W_h{r}",)) for f, r in zip("rzn", "rzh", strict=True)]
    + [((f"i{f}", "bias"), (f"b_{r}",)) for f, r in zip("rzn", "rzh", strict=True)]
    + [(("hn", "bias"), ("b_hh",))]
))
_GRU_NNX = Layout("gru", (
    (("dense_i", "kernel"), ("W_xr", "W_xz", "W_xh")),
    (("dense_i", "bias"), ("b_r", "b_z", "b_h")),
    (("dense_h", "kernel"), ("W_hr", "W_hz", "W_hh")),
), absent=("b_hh",))


def _simple(input_name: str, recurrent_name: str) -> Layout:
    return Layout("rnn", (((input_name, "kernel"), ("W_xh",)), ((input_name, "bias"), ("b_h",)),
                          ((recurrent_name, "kernel"), ("W_hh",))))


#: (API, class name) -> layout of the eight supported Flax cells.
LAYOUTS: dict[tuple[str, str], Layout] = {
    ("linen", "LSTMCell"): _lstm({}),
    ("linen", "OptimizedLSTMCell"): _lstm({}),  # same params as LSTMCell by design
    ("linen", "GRUCell"): _GRU_LINEN,
    ("linen", "SimpleCell"): _simple("i", "h"),
    ("nnx", "LSTMCell"): _lstm({"f": "if_"}),  # `if` is a Python keyword
    ("nnx", "OptimizedLSTMCell"): _LSTM_NNX_FUSED,
    ("nnx", "GRUCell"): _GRU_NNX,
    ("nnx", "SimpleCell"): _simple("dense_i", "dense_h"),
}


def _tree_keys(tree: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(str(m), str(a)) for m, sub in tree.items()
            for a in (sub if isinstance(sub, Mapping) else {"?": None})}


def params_from_tree(layout: Layout, tree: Mapping[str, Any], where: str) -> dict[str, Any]:
    """recurrax's params from a Flax cell's nested dict of arrays."""
    want = {path for path, _ in layout.fields}
    got = _tree_keys(tree)
    if got != want:
        def show(paths):
            return ", ".join(sorted("/".join(p) for p in paths)) or "none"

        raise ValueError(f"{where}: the Flax params do not fit this cell: missing "
                         f"[{show(want - got)}], unexpected [{show(got - want)}]")
    params: dict[str, Any] = {}
    for (module, name), targets in layout.fields:
        array = jnp.asarray(tree[module][name])
        blocks = jnp.split(array, len(targets), axis=-1) if len(targets) > 1 else [array]
        params.update(zip(targets, blocks, strict=True))
    for name in layout.absent:
        params[name] = jnp.zeros_like(params["b_h"])
    return params


def tree_from_params(layout: Layout, params: Mapping[str, Any], where: str,
                     cell_name: str) -> dict[str, dict[str, Any]]:
    """A Flax cell's nested dict of arrays from recurrax's params (the params
    it lacks must be 0)."""
    for name in layout.absent:
        largest = float(np.max(np.abs(np.asarray(params[name])))) if np.size(params[name]) else 0
        if largest != 0.0:
            raise ValueError(
                f"{where}: {cell_name} has no {name} (its recurrent Dense has no bias), but "
                f"the params' {name} is nonzero (max |{name}| = {largest:.3g}); convert to "
                f"flax.linen.GRUCell, which has it"
            )
    tree: dict[str, dict[str, Any]] = {}
    for (module, name), sources in layout.fields:
        arrays = [jnp.asarray(params[s]) for s in sources]
        tree.setdefault(module, {})[name] = (jnp.concatenate(arrays, axis=-1)
                                             if len(arrays) > 1 else arrays[0])
    return tree
