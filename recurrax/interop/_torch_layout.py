"""PyTorch's recurrent weights and states in recurrax's layout, and back, as
array functions on NumPy arrays (no torch here: `from_torch` and `to_torch`
move the arrays in and out of modules).

PyTorch stores, for layer `l` and direction `sfx` ("" forward, "_reverse"
backward), `weight_ih_l{l}{sfx}: (G·H, D)`, `weight_hh_l{l}{sfx}: (G·H, H)`,
`bias_ih_l{l}{sfx}, bias_hh_l{l}{sfx}: (G·H,)` with the `G` gates stacked
along the rows (LSTM `i, f, g, o`; GRU `r, z, n`) and computes column vectors
`W x + b`. recurrax computes row vectors `x W` with one matrix per gate, so

    W_x{g} = (block g of weight_ih)ᵀ,        W_h{g} = (block g of weight_hh)ᵀ

and the two biases, which PyTorch adds to the same pre-activation, become
one: `b_g = b_ih[g] + b_hh[g]` (RNN: `b_h`), except the GRU candidate, where
PyTorch's `b_hn` sits inside `r ⊙ (W_hn h + b_hn)`: `b_h = b_in`,
`b_hh = b_hn`. Back to PyTorch the sum goes into `bias_ih` and `bias_hh` is 0
there.

A module's final state `h_n` (and `c_n`) is `(num_layers · num_directions,
*batch, H)`, row `l · num_directions + direction`. The recurrax carry of the
matching `Seq`: one layer's carry (`h`, or `(c, h)` for the LSTM: note the
order) for one unidirectional layer, `(fwd, bwd)` for a bidirectional layer,
and a tuple over layers for more than one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from recurrax.interop import _kinds


class Spec(NamedTuple):
    """What a PyTorch recurrent module computes, in recurrax's terms."""

    kind: str  # "rnn", "lstm" or "gru" (_kinds)
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    batch_first: bool

    @property
    def directions(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)


def names(layer: int, suffix: str) -> tuple[str, str, str, str]:
    """PyTorch's names of one layer's and direction's weights and biases."""
    tail = f"_l{layer}{suffix}"
    return (f"weight_ih{tail}", f"weight_hh{tail}", f"bias_ih{tail}", f"bias_hh{tail}")


def _summed(kind: str) -> list[bool]:
    """Per gate: whether recurrax keeps `b_ih + b_hh` as one bias."""
    return [not (kind == "gru" and g == "h") for g in _kinds.GATES[kind]]


def cell_params(kind: str, w_ih, w_hh, b_ih=None, b_hh=None) -> dict[str, Any]:
    """One cell's recurrax params from PyTorch's four arrays (`None` biases:
    a module with `bias=False`, zeros). Slices, transposes and sums only, so
    it runs on NumPy arrays (no compilation) and on JAX arrays alike (the
    tests differentiate it)."""
    gates = _kinds.GATES[kind]
    H = w_hh.shape[-1]
    zeros = np.zeros((len(gates) * H,), w_hh.dtype)
    b_ih = zeros if b_ih is None else b_ih
    b_hh = zeros if b_hh is None else b_hh
    out = {}
    for index, (g, b_name, summed) in enumerate(zip(gates, _kinds.biases(kind), _summed(kind),
                                                    strict=True)):
        rows = slice(index * H, (index + 1) * H)
        out[f"W_x{g}"] = w_ih[rows].T
        out[f"W_h{g}"] = w_hh[rows].T
        if summed:
            out[b_name] = b_ih[rows] + b_hh[rows]
        else:  # the GRU candidate: b_in outside, b_hn inside r ⊙ (·)
            out[b_name] = b_ih[rows]
            out["b_hh"] = b_hh[rows]
    return out


def cell_arrays(kind: str, params: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """PyTorch's `(weight_ih, weight_hh, bias_ih, bias_hh)` from one cell's
    recurrax params (summed biases in `bias_ih`, zeros in `bias_hh`), NumPy."""
    p = {k: np.asarray(v) for k, v in params.items()}
    gates = _kinds.GATES[kind]
    w_ih = np.concatenate([p[f"W_x{g}"].T for g in gates], axis=0)
    w_hh = np.concatenate([p[f"W_h{g}"].T for g in gates], axis=0)
    b_ih, b_hh = [], []
    for b_name, summed in zip(_kinds.biases(kind), _summed(kind), strict=True):
        b_ih.append(p[b_name])
        b_hh.append(np.zeros_like(p[b_name]) if summed else p["b_hh"])
    return w_ih, w_hh, np.concatenate(b_ih), np.concatenate(b_hh)


def params_from_arrays(spec: Spec, arrays: Mapping[str, Any]) -> Any:
    """The params of `from_torch`'s `Seq` from PyTorch's arrays by name (the
    biases may be missing: `bias=False`)."""
    layers = []
    for layer in range(spec.num_layers):
        per_direction = []
        for suffix in spec.directions:
            w_ih, w_hh, b_ih, b_hh = names(layer, suffix)
            per_direction.append(cell_params(spec.kind, arrays[w_ih], arrays[w_hh],
                                             arrays.get(b_ih), arrays.get(b_hh)))
        layers.append(dict(zip(("fwd", "bwd"), per_direction, strict=True))
                      if spec.bidirectional else per_direction[0])
    return layers[0] if spec.num_layers == 1 else tuple(layers)


def layer_params(spec: Spec, params: Any) -> list[list[Mapping[str, Any]]]:
    """The cells' params of a `from_torch`-shaped params tree, `[layer][direction]`."""
    layers = [params] if spec.num_layers == 1 else list(params)
    if spec.bidirectional:
        return [[p["fwd"], p["bwd"]] for p in layers]
    return [[p] for p in layers]


def arrays_from_params(spec: Spec, params: Any) -> dict[str, Any]:
    """PyTorch's arrays by name from a params tree shaped as `spec` says."""
    out = {}
    for layer, cells in enumerate(layer_params(spec, params)):
        for suffix, p in zip(spec.directions, cells, strict=True):
            out.update(zip(names(layer, suffix), cell_arrays(spec.kind, p), strict=True))
    return out


def carry_from_arrays(spec: Spec, h, c=None) -> Any:
    """The recurrax carry of `from_torch`'s `Seq` from `h_0` (and `c_0`),
    `(num_layers · num_directions, *batch, H)`."""
    if spec.kind == "lstm" and c is None:
        raise ValueError("an LSTM's carry needs c_0 as well as h_0")

    def cell_carry(row: int):
        return (c[row], h[row]) if spec.kind == "lstm" and c is not None else h[row]

    n = len(spec.directions)
    layers = [tuple(cell_carry(layer * n + d) for d in range(n)) if spec.bidirectional
              else cell_carry(layer) for layer in range(spec.num_layers)]
    return layers[0] if spec.num_layers == 1 else tuple(layers)


def arrays_from_carry(spec: Spec, carry: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """`(h, c)` (`c` None but for the LSTM) stacked as PyTorch's `h_n` and
    `c_n` from a carry of `from_torch`'s `Seq`, NumPy."""
    layers = [carry] if spec.num_layers == 1 else list(carry)
    rows = [d for layer in layers for d in (layer if spec.bidirectional else [layer])]
    if spec.kind == "lstm":
        return np.stack([np.asarray(h) for _, h in rows]), np.stack([np.asarray(c)
                                                                   for c, _ in rows])
    return np.stack([np.asarray(h) for h in rows]), None
