"""`from_flax` / `to_flax`: Flax's `LSTMCell`, `OptimizedLSTMCell`, `GRUCell`
and `SimpleCell` (linen and NNX) as recurrax cells with their params, and
back. flax is imported inside the functions only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from recurrax.interop import _kinds
from recurrax.interop._flax_layout import LAYOUTS, params_from_tree, tree_from_params
from recurrax.protocols import Cell

#: The linen class `to_flax` builds for each kind unless told otherwise.
_DEFAULT = {"lstm": "LSTMCell", "gru": "GRUCell", "rnn": "SimpleCell"}


def _classes() -> dict[type, tuple[str, str]]:
    import flax.linen as nn
    from flax import nnx

    return {getattr(nn if api == "linen" else nnx, name): (api, name) for api, name in LAYOUTS}


def _label(api: str, name: str) -> str:
    return f"flax.{api}.{name}"


def _identify(module: Any, where: str) -> tuple[str, str]:
    classes = _classes()
    if type(module) in classes:
        return classes[type(module)]
    for cls, entry in classes.items():
        if isinstance(module, cls):
            if type(module).__call__ is not cls.__call__:
                raise TypeError(f"{where}: {type(module).__name__} overrides "
                                f"{_label(*entry)}.__call__, so what it computes is unknown; "
                                f"only the plain Flax cell converts")
            return entry
    known = ", ".join(_label(*k) for k in LAYOUTS)
    raise TypeError(f"{where}: expected one of {known}; got "
                    f"{type(module).__module__}.{type(module).__name__}")


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _check_options(module: Any, api: str, name: str, dtype: Any, where: str) -> None:
    """Refuse the options under which the Flax cell computes something else
    than recurrax's cell (initialisers and `carry_init` only make the first
    values, so they do not matter)."""
    from flax.nnx.nn import dtypes

    label = _label(api, name)
    gate_fn = getattr(module, "gate_fn", jax.nn.sigmoid)
    if gate_fn is not jax.nn.sigmoid:
        raise ValueError(f"{where}: {label}(gate_fn={_fn_name(gate_fn)}): recurrax's gates "
                         f"are the logistic sigmoid, Flax's default gate_fn; only that converts")
    activation_fn = getattr(module, "activation_fn", jnp.tanh)
    if activation_fn is not jnp.tanh:
        raise ValueError(f"{where}: {label}(activation_fn={_fn_name(activation_fn)}): "
                         f"recurrax's cells use tanh, Flax's default activation_fn; only that "
                         f"converts")
    if getattr(module, "residual", False):
        raise ValueError(f"{where}: {label}(residual=True) adds h before the activation, which "
                         f"recurrax's rnn does not; fold it into the recurrent kernel "
                         f"(kernel + I) and convert a residual=False cell")
    compute = getattr(module, "dtype", None)
    if compute is not None and jnp.dtype(compute) != jnp.dtype(dtype):
        raise ValueError(f"{where}: {label}(dtype={jnp.dtype(compute).name}) computes in "
                         f"{jnp.dtype(compute).name}, but its params are "
                         f"{jnp.dtype(dtype).name}; recurrax computes in the params' dtype "
                         f"(use dtype=None, or cast the params)")
    if api == "nnx" and module.promote_dtype is not dtypes.promote_dtype:
        raise ValueError(f"{where}: {label}(promote_dtype={_fn_name(module.promote_dtype)}) "
                         f"is not Flax's default; only that converts")


def _check_sizes(module: Any, api: str, D: int, H: int, where: str) -> None:
    declared = ({"features": H} if api == "linen"
                else {"in_features": D, "hidden_features": H})
    for attr, value in declared.items():
        if getattr(module, attr) != value:
            raise ValueError(f"{where}: the cell has {attr}={getattr(module, attr)}, but its "
                             f"params have {value}")


def from_flax(flax_cell: Any, variables: Any = None) -> tuple[Cell, dict[str, jax.Array]]:
    r"""A Flax recurrent cell as `(cell, params)` with `cell.step(params, carry,
    cell.prepare(params, x))` equal to `flax_cell(carry, x)` (linen:
    `flax_cell.apply(variables, carry, x)`), so that `recurrax.scan` runs
    Flax's `nn.RNN(flax_cell)`.

    | Flax (linen or NNX)                  | recurrax                         |
    | ------------------------------------ | -------------------------------- |
    | `LSTMCell`, `OptimizedLSTMCell`      | `lstm(H)`, carry `(c, h)` as Flax |
    | `GRUCell`                            | `gru(H, reset_after=True)`       |
    | `SimpleCell`                         | `rnn(H)`                         |

    Linen cells hold no weights: pass `variables` (`{"params": ...}` from
    `flax_cell.init`, or the params dict itself). An NNX cell carries its own:
    leave `variables` out. Params keep their dtype and are Flax's kernels
    themselves (row vectors on both sides), split per gate; the NNX GRU has
    no recurrent bias, so its `b_hh` is 0.

    Raises `TypeError` for another module or a subclass that overrides
    `__call__`, `ValueError` for options with no recurrax equivalent:
    `gate_fn` other than sigmoid, `activation_fn` other than tanh,
    `residual=True`, a computation `dtype` other than the params', an NNX
    `promote_dtype` of one's own.
    """
    where = "from_flax"
    api, name = _identify(flax_cell, where)
    layout = LAYOUTS[(api, name)]
    if api == "linen":
        if variables is None:
            raise TypeError(f"{where}: a linen {name} holds no weights; pass its variables "
                            f"(flax_cell.init(...), or their 'params')")
        if not isinstance(variables, Mapping):
            raise TypeError(f"{where}: variables must be a dict, got {type(variables).__name__}")
        tree = variables["params"] if "params" in variables else variables
    else:
        from flax import nnx

        if variables is not None:
            raise TypeError(f"{where}: an NNX {name} carries its own weights; call "
                            f"from_flax(flax_cell) without variables")
        state = nnx.state(flax_cell, nnx.Param)
        to_pure_dict = getattr(nnx, "to_pure_dict", None)  # State.to_pure_dict before 0.11
        tree = to_pure_dict(state) if to_pure_dict else state.to_pure_dict()
    leaves = jax.tree.leaves(tree)
    dtype = jnp.result_type(*(leaf.dtype for leaf in leaves)) if leaves else jnp.float32
    _check_options(flax_cell, api, name, dtype, where)
    params = params_from_tree(layout, tree, where)
    D, H = _kinds.sizes(params, layout.kind, where)
    _check_sizes(flax_cell, api, D, H, where)
    return _kinds.build(layout.kind, H), params


def to_flax(cell: Cell, params: Mapping[str, Any], flax_class: type | None = None) -> Any:
    r"""The Flax cell that computes what `cell` does with `params`;
    `from_flax` of the result gives `params` back exactly.

    `flax_class` is one of `flax.linen.{LSTMCell, OptimizedLSTMCell, GRUCell,
    SimpleCell}` or their `flax.nnx` namesakes, of the params' kind; `None`
    takes the linen `LSTMCell`, `GRUCell` or `SimpleCell`. Returns what
    `from_flax` takes: `(module, {"params": ...})` for a linen class, the
    module itself, weights set, for an NNX class. The kind is read from the
    params' names (`W_xh, W_hh, b_h`: rnn; `W_x{i,f,g,o}, …`: lstm;
    `W_x{r,z,h}, …, b_hh`: gru with `reset_after=True`) and `cell` is checked
    to compute it (one step on a random input).

    Raises `ValueError` for params of cells Flax lacks (`gru(reset_after=False)`,
    the LSTM ablations, the MUT cells, ...), for a cell that does not compute
    what its params describe, and for a nonzero `b_hh` into the NNX `GRUCell`
    (which has no recurrent bias).
    """
    where = "to_flax"
    kind = _kinds.infer_kind(params, where, "Flax")
    D, H = _kinds.sizes(params, kind, where)
    _kinds.check_cell(cell, params, kind, where)
    classes = _classes()
    if flax_class is None:
        import flax.linen as nn

        flax_class = getattr(nn, _DEFAULT[kind])
    if flax_class not in classes:
        known = ", ".join(_label(*k) for k in LAYOUTS)
        raise TypeError(f"{where}: flax_class must be one of {known}; got {flax_class!r}")
    api, name = classes[flax_class]
    layout = LAYOUTS[(api, name)]
    if layout.kind != kind:
        raise ValueError(f"{where}: flax_class={_label(api, name)} is a {layout.kind} cell, but "
                         f"the params are a {kind}'s")
    tree = tree_from_params(layout, params, where, _label(api, name))
    dtype = jnp.result_type(*params.values())
    if api == "linen":
        return flax_class(features=H, param_dtype=dtype), {"params": tree}
    from flax import nnx

    options = {"dtype": dtype} if name == "SimpleCell" else {}  # NNX's default is float32
    module = nnx.eval_shape(lambda: flax_class(D, H, param_dtype=dtype, rngs=nnx.Rngs(0),
                                               **options))
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, tree)
    nnx.update(module, state)
    return module
