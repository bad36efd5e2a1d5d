"""`from_torch` / `to_torch`: PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU` as
recurrax `Seq`s with their params, and back; `carry_from_torch` /
`carry_to_torch` for the states. torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recurrax import _checks
from recurrax.combinators import bidirectional, layer, stack
from recurrax.interop import _kinds
from recurrax.interop import _torch_layout as L
from recurrax.interop._torch_probe import check_seq
from recurrax.protocols import Cell, Seq

_MODULES = ("RNN", "LSTM", "GRU")


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - torch is a dev dependency
        raise ImportError("recurrax.interop's PyTorch converters need torch "
                          "(pip install torch)") from error
    return torch


def _spec(module: Any, where: str) -> L.Spec:
    """What `module` computes; refuses what recurrax cannot compute exactly."""
    torch = _torch()
    kind = next((name.lower() for name in _MODULES
                 if isinstance(module, getattr(torch.nn, name))), None)
    if kind is None:
        raise TypeError(
            f"{where}: expected a torch.nn.RNN, nn.LSTM or nn.GRU module, got "
            f"{type(module).__module__}.{type(module).__name__}"
            + (" (the single-step nn.*Cell modules are not converted: copy their weights "
               "into a one-layer nn.RNN/LSTM/GRU)"
               if type(module).__name__ in ("RNNCell", "LSTMCell", "GRUCell") else "")
        )
    base = getattr(torch.nn, kind.upper())
    if type(module).forward is not base.forward:
        raise TypeError(f"{where}: {type(module).__name__} overrides {base.__name__}.forward, "
                        f"so what it computes is unknown; only plain nn.{base.__name__} converts")
    name = f"nn.{base.__name__}"
    if kind == "rnn" and module.nonlinearity != "tanh":
        raise ValueError(f"{where}: {name}(nonlinearity={module.nonlinearity!r}) has no recurrax "
                         f"cell; recurrax.cells.rnn is nonlinearity='tanh' only")
    if getattr(module, "proj_size", 0) > 0:
        raise ValueError(f"{where}: {name}(proj_size={module.proj_size}), an LSTM whose output "
                         f"h is projected to proj_size units, has no recurrax cell")
    if module.dropout > 0 and module.num_layers > 1:
        raise ValueError(
            f"{where}: {name}(dropout={module.dropout}, num_layers={module.num_layers}) drops "
            f"between layers with torch's random masks, which recurrax cannot reproduce; set "
            f"module.dropout = 0.0 to convert (evaluation-mode outputs do not depend on it)"
        )
    return L.Spec(kind, int(module.input_size), int(module.hidden_size),
                  int(module.num_layers), bool(module.bidirectional), bool(module.batch_first))


def build_seq(spec: L.Spec, *, residual: bool = False) -> Seq:
    """The recurrax `Seq` that computes what the PyTorch module of `spec` does
    (`residual`: a residual stack instead, which only `to_torch`'s check uses)."""
    time_major = not spec.batch_first
    cell = _kinds.build(spec.kind, spec.hidden_size)

    def one_layer() -> Seq:
        if spec.bidirectional:
            return bidirectional(cell, time_major=time_major)
        return layer(cell, time_major=time_major)

    if spec.num_layers == 1:
        return one_layer()
    return stack([one_layer() for _ in range(spec.num_layers)], residual=residual,
                 time_major=time_major)


def from_torch(module: Any) -> tuple[Seq, Any]:
    r"""A PyTorch `nn.RNN` (tanh), `nn.LSTM` or `nn.GRU` as `(seq, params)`
    with `seq.apply(params, xs, carry, lengths=...)` equal to the module's
    forward pass.

    `seq` is always a `Seq`, laid out as the module (`time_major = not
    batch_first`):

    - one layer, one direction: `recurrax.layer(cell)`, params the cell's dict;
    - `num_layers > 1`: `recurrax.stack([...])`, params a tuple per layer;
    - `bidirectional=True`: each layer a `recurrax.bidirectional(cell)`
      (`merge="concat"`, params `{"fwd", "bwd"}`); with more layers a stack of
      them, layer `l` reading both directions of layer `l − 1`, as PyTorch.

    The cell is `rnn(H)`, `lstm(H)` or `gru(H, reset_after=True)`. Params are
    float32: `W_x{g} = (block g of weight_ih)ᵀ`, `W_h{g} = (block g of
    weight_hh)ᵀ`, and the two biases are summed (`b_g = b_ih[g] + b_hh[g]`)
    except the GRU candidate's (`b_h = b_in`, `b_hh = b_hn`); `bias=False`
    gives zero biases. The module's `(h_0, c_0)` and `(h_n, c_n)` convert with
    `carry_from_torch` and `carry_to_torch`.

    Raises `TypeError` for any other module, `ValueError` for what has no
    exact recurrax form: `nonlinearity="relu"`, `proj_size > 0`, `dropout > 0`
    between layers.
    """
    spec = _spec(module, "from_torch")
    arrays = {}
    for layer_index in range(spec.num_layers):
        for suffix in spec.directions:
            for name in L.names(layer_index, suffix)[: 4 if module.bias else 2]:
                value = getattr(module, name)  # (a parametrized weight's value, too)
                arrays[name] = value.detach().cpu().float().numpy().copy()  # never aliased
    params = L.params_from_arrays(spec, arrays)
    return build_seq(spec), jax.tree.map(jnp.asarray, params)


def _spec_from_params(params: Any, batch_first: bool) -> L.Spec:
    """The PyTorch module a params tree describes: a cell's dict, `{"fwd", "bwd"}`
    of two cells' dicts, or a tuple of either, one per layer."""
    where = "to_torch"

    def is_bidirectional(p: Any) -> bool:
        return isinstance(p, Mapping) and set(map(str, p)) == {"fwd", "bwd"}

    if isinstance(params, (tuple, list)):
        layers = list(params)
        if not layers:
            raise ValueError(f"{where}: params is an empty tuple")
    elif isinstance(params, Mapping):
        layers = [params]
    else:
        raise TypeError(f"{where}: params must be a cell's dict, a bidirectional's "
                        f"{{'fwd', 'bwd'}} or a stack's tuple, got {type(params).__name__}")
    bidir = [is_bidirectional(p) for p in layers]
    if any(bidir) and not all(bidir):
        raise ValueError(f"{where}: only some layers of the stack are bidirectional "
                         f"(layers {[i for i, b in enumerate(bidir) if b]}); a PyTorch module "
                         f"is bidirectional in every layer or in none")
    cells = [[p["fwd"], p["bwd"]] if bidir[0] else [p] for p in layers]
    for index, directions in enumerate(cells):
        for p in directions:
            if isinstance(p, (tuple, list)) or is_bidirectional(p):
                raise ValueError(
                    f"{where}: layer {index} is a bidirectional of stacks (or nests deeper); "
                    f"PyTorch's multi-layer bidirectional modules are a stack of "
                    f"bidirectional layers, each reading both directions of the layer below"
                )
    kinds = [[_kinds.infer_kind(p, f"{where}: layer {i}", "PyTorch") for p in ps]
             for i, ps in enumerate(cells)]
    kind = kinds[0][0]
    if any(k != kind for ks in kinds for k in ks):
        raise ValueError(f"{where}: the layers mix cells ({kinds}); a PyTorch module has one "
                         f"kind of cell throughout")
    sizes = [[_kinds.sizes(p, kind, f"{where}: layer {i}") for p in ps]
             for i, ps in enumerate(cells)]
    D, H = sizes[0][0]
    width = H * (2 if bidir[0] else 1)
    for index, per_direction in enumerate(sizes):
        for got in per_direction:
            want = (D if index == 0 else width, H)
            if got != want:
                raise ValueError(
                    f"{where}: layer {index} has {got[0]} inputs and {got[1]} units, but a "
                    f"PyTorch module of hidden_size {H} needs {want[0]} inputs and {want[1]} "
                    f"units there"
                )
    return L.Spec(kind, D, H, len(layers), bidir[0], batch_first)


def to_torch(cell_or_seq: Cell | Seq, params: Any, *, batch_first: bool = False) -> Any:
    r"""The PyTorch module (`nn.RNN(nonlinearity="tanh")`, `nn.LSTM` or
    `nn.GRU`, `bias=True`) that computes what `cell_or_seq` does with
    `params`; `from_torch(to_torch(m, p))` gives `p` back exactly.

    A `Cell` is taken as one layer over the sequence. The module's structure
    and kind are read from `params`, since cells are closures: a tuple is a
    stack of `num_layers` layers, `{"fwd", "bwd"}` a bidirectional layer
    (each layer of a stack, or none), and each cell's param names give its
    kind (`W_xh, W_hh, b_h`: rnn; `W_x{i,f,g,o}, …`: lstm; `W_x{r,z,h}, …,
    b_hh`: gru with `reset_after=True`). The summed biases go to `bias_ih`,
    with `bias_hh` zero there; the GRU's `b_hh` is `b_hn`. The module's dtype
    is the params' dtype; `batch_first` sets its layout (the `Seq` must have
    been built with `time_major = not batch_first`).

    `cell_or_seq` is checked against the model the params describe on a
    small random input (the traced programs must be the same, or else the
    numbers): a hidden size, a cell or a structure that does not compute the
    same (a residual stack, dropout between layers, `merge="sum"`, another
    layout, another cell with the same param names) is a `ValueError`
    naming it. Params of cells PyTorch lacks
    (`gru(reset_after=False)`, the LSTM ablations, the MUT cells, ...) are
    a `ValueError` naming the cell.
    """
    torch = _torch()
    batch_first = _checks.check_flag("to_torch: batch_first", batch_first)
    spec = _spec_from_params(params, batch_first)
    if isinstance(cell_or_seq, Cell):
        if spec.num_layers != 1 or spec.bidirectional:
            raise ValueError("to_torch: got one Cell but the params of a stack or a "
                             "bidirectional; pass the Seq they belong to")
        _kinds.check_cell(cell_or_seq, params, spec.kind, "to_torch")
    elif isinstance(cell_or_seq, Seq):
        check_seq(cell_or_seq, params, spec, build_seq)
    else:
        raise TypeError(f"to_torch: expected a recurrax.Cell or Seq, got "
                        f"{type(cell_or_seq).__name__}")
    dtype = jnp.result_type(*jax.tree.leaves(params))
    torch_dtype = getattr(torch, np.dtype(dtype).name)
    module_class = getattr(torch.nn, spec.kind.upper())
    options = {"nonlinearity": "tanh"} if spec.kind == "rnn" else {}
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten
        module = module_class(spec.input_size, spec.hidden_size, num_layers=spec.num_layers,
                              bias=True, batch_first=spec.batch_first,
                              bidirectional=spec.bidirectional, dtype=torch_dtype, **options)
    wide = np.float64 if np.dtype(dtype).itemsize > 4 else np.float32
    with torch.no_grad():
        for name, value in L.arrays_from_params(spec, params).items():
            getattr(module, name).copy_(torch.from_numpy(np.array(value, wide)))
    return module


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().to("cpu").float().numpy() if hasattr(x, "detach") else np.asarray(x)


def carry_from_torch(module: Any, hx: Any) -> Any:
    """PyTorch's initial state for `module` (`h_0`, or `(h_0, c_0)` for an
    LSTM, each `(num_layers · num_directions, *batch, H)`; torch tensors or
    arrays) as the carry of `from_torch(module)`'s `Seq` (float32). The LSTM
    carry is `(c, h)`: the other order. `None` stays `None` (zeros in both)."""
    spec = _spec(module, "carry_from_torch")
    if hx is None:
        return None
    if spec.kind == "lstm":
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"carry_from_torch: an LSTM's state is a pair (h_0, c_0), got "
                            f"{type(hx).__name__}")
        h, c = (np.asarray(_to_numpy(a), np.float32) for a in hx)
    else:
        h, c = np.asarray(_to_numpy(hx), np.float32), None
    rows = spec.num_layers * len(spec.directions)
    for label, a in (("h_0", h), ("c_0", c)):
        if a is not None and (a.ndim < 2 or a.shape[0] != rows or a.shape[-1] !=
                              spec.hidden_size):
            raise ValueError(f"carry_from_torch: {label} must have shape (num_layers * "
                             f"num_directions, *batch, hidden_size) = ({rows}, ..., "
                             f"{spec.hidden_size}), got {tuple(a.shape)}")
    return jax.tree.map(jnp.asarray, L.carry_from_arrays(spec, h, c))


def carry_to_torch(module: Any, carry: Any) -> Any:
    """The carry of `from_torch(module)`'s `Seq` as PyTorch's `h_n` (or
    `(h_n, c_n)` for an LSTM), torch tensors of the module's dtype and device."""
    torch = _torch()
    spec = _spec(module, "carry_to_torch")
    leaves = jax.tree.leaves(carry)
    if not leaves:
        raise ValueError("carry_to_torch: carry has no arrays")
    batch = tuple(np.shape(leaves[0])[:-1])
    rows = spec.num_layers * len(spec.directions)
    template = L.carry_from_arrays(spec, np.zeros((rows, *batch, spec.hidden_size)),
                                   np.zeros((rows, *batch, spec.hidden_size)))
    if jax.tree.structure(carry) != jax.tree.structure(template) or any(
            np.shape(a) != np.shape(b) for a, b in zip(leaves, jax.tree.leaves(template),
                                                        strict=True)):
        raise ValueError(
            f"carry_to_torch: the carry is not one of from_torch(module)'s Seq "
            f"({spec.num_layers} layer(s), {len(spec.directions)} direction(s), "
            f"{spec.kind}, hidden size {spec.hidden_size})"
        )
    weight = next(module.parameters())
    h, c = L.arrays_from_carry(spec, carry)

    def tensor(a):
        return torch.from_numpy(np.array(a, np.float32)).to(weight.device, weight.dtype)

    return (tensor(h), tensor(c)) if spec.kind == "lstm" else tensor(h)
