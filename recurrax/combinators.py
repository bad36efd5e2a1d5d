"""Combinators that build a `Seq` (a whole-sequence model) from cells and other
`Seq`s: `layer`, `stack` and `bidirectional`.

Every `Seq.apply` has the signature
`(params, xs, carry=None, *, lengths=None, key=None) -> (carry, ys)` and the
`lengths` convention of `recurrax.scan`: outputs at padded steps are 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recurrax import _checks as checks
from recurrax._deferred import WeightGrads, check_weight_grads
from recurrax.masking import reverse_sequence
from recurrax.nn import dropout as apply_dropout
from recurrax.protocols import Cell, Seq
from recurrax.scan import scan


def layer(
    cell: Cell,
    *,
    reverse: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
    hoist: bool | None = None,
    time_major: bool = True,
    weight_grads: WeightGrads = "after_loop",
) -> Seq:
    """One cell over the whole sequence: `apply` is `recurrax.scan` with these
    options (`weight_grads`: where the derivative computes the recurrent
    weights' gradients, see `scan`). Params are the cell's params; the carry
    is the cell's carry."""
    if not isinstance(cell, Cell):
        raise TypeError(f"layer: expected a recurrax.Cell, got {type(cell).__name__}")
    check_weight_grads("layer", weight_grads)
    reverse = checks.check_flag("layer: reverse", reverse)
    remat = checks.check_flag("layer: remat", remat)
    hoist = checks.check_flag("layer: hoist", hoist, allow_none=True)
    time_major = checks.check_flag("layer: time_major", time_major)
    unroll = checks.check_unroll(unroll)

    def apply(params, xs, carry=None, *, lengths=None, key=None):
        del key  # a single cell has nothing stochastic
        return scan(
            cell, params, xs, carry, lengths=lengths, reverse=reverse, unroll=unroll,
            remat=remat, hoist=hoist, time_major=time_major, weight_grads=weight_grads,
        )

    return Seq(cell.init, apply)


def _as_seq(part: Cell | Seq, time_major: bool, weight_grads: WeightGrads, where: str) -> Seq:
    if isinstance(part, Cell):
        return layer(part, time_major=time_major, weight_grads=weight_grads)
    if isinstance(part, Seq):
        return part
    raise TypeError(f"{where}: expected a recurrax.Cell or Seq, got {type(part).__name__}")


def _output_size(seq: Seq, params: Any, input_size: int) -> int:
    xs = jax.ShapeDtypeStruct((1, 1, input_size), jnp.float32)
    return jax.eval_shape(lambda p, x: seq.apply(p, x)[1], params, xs).shape[-1]


def _split_key(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    if key is None:
        return [None] * n
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and len(getattr(key, "shape", ())) == 1  # a legacy raw key
    if not (typed or raw):
        raise TypeError(
            f"key: expected a PRNG key (e.g. jax.random.key(0)) or None (evaluation mode), got "
            f"{type(key).__name__}"
            + (f" of dtype {dtype} and shape {tuple(key.shape)}" if dtype is not None else "")
        )
    return list(jax.random.split(key, n))


def _check_carry_count(carry: Any, n: int, where: str) -> Sequence[Any]:
    if carry is None:
        return (None,) * n
    if not isinstance(carry, (tuple, list)) or len(carry) != n:
        raise ValueError(f"{where}: carry must be None or a tuple of {n} carries, one per part")
    return carry


def stack(
    layers: Sequence[Cell | Seq],
    residual: bool = False,
    dropout: float = 0.0,
    *,
    time_major: bool = True,
    weight_grads: WeightGrads = "after_loop",
) -> Seq:
    r"""Layers one after another, each a full scan over the sequence (so each
    layer's input projection stays one large matmul):

        x⁰ = xs
        hˡ = fₗ(xˡ)  (+ xˡ for l ≥ 1 when `residual`)
        xˡ⁺¹ = dropout(hˡ, rate)           for l < L − 1
        ys = h^{L−1}

    A `Cell` in `layers` is wrapped with `layer(cell, time_major=...,
    weight_grads=...)` (`weight_grads`: where the derivative computes the
    recurrent weights' gradients, see `scan`); a `Seq` keeps the options it
    was built with. Dropout acts between layers (not after the last), only
    when `apply` is given a PRNG `key`; `key=None` is evaluation mode. With
    `residual`, every layer after the first must keep the width of its input.
    Params: a tuple, one entry per layer. Carry: a tuple of the layers'
    carries.
    """
    check_weight_grads("stack", weight_grads)
    residual = checks.check_flag("stack: residual", residual)
    time_major = checks.check_flag("stack: time_major", time_major)
    if isinstance(layers, (Cell, Seq)) or not isinstance(layers, Iterable):
        raise TypeError(
            f"stack: layers must be a list of cells or Seqs, got {type(layers).__name__}"
            + (" (wrap a single one in a list: stack([cell]))"
               if isinstance(layers, (Cell, Seq)) else "")
        )
    seqs = [_as_seq(part, time_major, weight_grads, "stack") for part in layers]
    if not seqs:
        raise ValueError("stack: needs at least one layer")
    if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.number)):
        raise TypeError(f"stack: dropout must be a float in [0, 1), got "
                        f"{type(dropout).__name__} {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"stack: dropout must lie in [0, 1), got {dropout!r}")
    dropout = float(dropout)
    n = len(seqs)

    def init(key: jax.Array, input_size: int) -> tuple:
        params, width = [], input_size
        for index, (seq, k) in enumerate(zip(seqs, jax.random.split(key, n), strict=True)):
            p = seq.init(k, width)
            out = _output_size(seq, p, width)
            if residual and index > 0 and out != width:
                raise ValueError(
                    f"stack: residual needs layer {index} to keep its input width "
                    f"{width}, but it outputs {out}"
                )
            params.append(p)
            width = out
        return tuple(params)

    def apply(params, xs, carry=None, *, lengths=None, key=None):
        if not isinstance(params, (tuple, list)) or len(params) != n:
            raise ValueError(f"stack: params must be a tuple of {n} entries, one per layer")
        carries = _check_carry_count(carry, n, "stack")
        layer_keys = _split_key(key, 2 * n)
        finals, h = [], xs
        for index, (seq, p, c) in enumerate(zip(seqs, params, carries, strict=True)):
            c, out = seq.apply(p, h, c, lengths=lengths, key=layer_keys[2 * index])
            if residual and index > 0:
                out = out + h  # padded steps stay 0: both terms are 0 there
            if index < n - 1:
                out = apply_dropout(layer_keys[2 * index + 1], out, dropout)
            finals.append(c)
            h = out
        return tuple(finals), h

    return Seq(init, apply)


def _backward(seq: Seq, time_major: bool) -> Seq:
    """Run `seq` on each row reversed within its length, and reverse its outputs
    back, so they stay aligned with the inputs."""

    def apply(params, xs, carry=None, *, lengths=None, key=None):
        flipped = reverse_sequence(xs, lengths, time_major)
        carry, ys = seq.apply(params, flipped, carry, lengths=lengths, key=key)
        return carry, reverse_sequence(ys, lengths, time_major)

    return Seq(seq.init, apply)


def bidirectional(
    fwd: Cell | Seq,
    bwd: Cell | Seq | None = None,
    merge: str = "concat",
    *,
    time_major: bool = True,
    weight_grads: WeightGrads = "after_loop",
) -> Seq:
    r"""A forward and a backward pass over the same inputs, merged per step:

        y_t = [→y_t ; ←y_t]   (merge="concat")   or   →y_t + ←y_t   (merge="sum")

    The backward direction starts at each row's last valid step
    (`lengths[b] − 1`) and its outputs stay aligned with `xs`. `bwd=None` uses
    a second copy of `fwd` with its own params. A `Cell` runs backward with
    `scan(..., reverse=True)`; a `Seq` (e.g. a stack) runs on each row
    reversed within its length. A `Cell` runs with `weight_grads` (see
    `scan`); a `Seq` keeps the options it was built with. Params:
    `{"fwd": ..., "bwd": ...}`; carry: `(fwd_carry, bwd_carry)`.
    """
    if not isinstance(merge, str) or merge not in ("concat", "sum"):
        raise ValueError(f"bidirectional: merge must be 'concat' or 'sum', got {merge!r}")
    check_weight_grads("bidirectional", weight_grads)
    time_major = checks.check_flag("bidirectional: time_major", time_major)
    forward = _as_seq(fwd, time_major, weight_grads, "bidirectional")
    bwd = fwd if bwd is None else bwd
    if isinstance(bwd, Cell):
        backward = layer(bwd, reverse=True, time_major=time_major, weight_grads=weight_grads)
    else:
        backward = _backward(_as_seq(bwd, time_major, weight_grads, "bidirectional"), time_major)

    def init(key: jax.Array, input_size: int) -> dict:
        k_fwd, k_bwd = jax.random.split(key)
        return {"fwd": forward.init(k_fwd, input_size), "bwd": backward.init(k_bwd, input_size)}

    def apply(params, xs, carry=None, *, lengths=None, key=None):
        if not isinstance(params, Mapping) or set(params) != {"fwd", "bwd"}:
            got = sorted(map(str, params)) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(
                f"bidirectional: params must be a dict with the keys 'fwd' and 'bwd' "
                f"(as init makes it), got {got}"
            )
        c_fwd, c_bwd = _check_carry_count(carry, 2, "bidirectional")
        k_fwd, k_bwd = _split_key(key, 2)
        c_fwd, y_fwd = forward.apply(params["fwd"], xs, c_fwd, lengths=lengths, key=k_fwd)
        c_bwd, y_bwd = backward.apply(params["bwd"], xs, c_bwd, lengths=lengths, key=k_bwd)
        if merge == "concat":
            ys = jnp.concatenate([y_fwd, y_bwd], axis=-1)
        elif y_fwd.shape != y_bwd.shape:
            raise ValueError(
                f"bidirectional: merge='sum' needs equal output widths, got "
                f"{y_fwd.shape[-1]} forward and {y_bwd.shape[-1]} backward"
            )
        else:
            ys = y_fwd + y_bwd
        return (c_fwd, c_bwd), ys

    return Seq(init, apply)
