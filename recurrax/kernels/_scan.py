"""`recurrax.kernels.scan`: a cell over a sequence by the fused kernels, with
its derivative (`custom_vjp`: the forward kernel saves residuals, the backward
kernel runs the adjoint, the weight gradients are one GEMM after it)."""

from __future__ import annotations

import functools
import math
from typing import Any, cast

import jax
import jax.numpy as jnp

from recurrax import _checks as checks
from recurrax.kernels import _plan, _step
from recurrax.kernels._backward import backward
from recurrax.kernels._forward import forward
from recurrax.kernels._plan import KernelUnsupported
from recurrax.kernels._step import Config
from recurrax.protocols import Carry, Cell
from recurrax.scan import setup_run

#: The batch tile of one GPU program when `tile=None` (Triton's matmuls need
#: at least 16 rows). In the interpreter the default is the whole batch.
GPU_TILE = 16

_MATMUL_DTYPES = ("float32", "bfloat16", "float64")


def scan(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    carry: Carry | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = True,
    matmul_dtype: Any = None,
    tile: int | None = None,
    interpret: bool = False,
) -> tuple[Carry, jax.Array]:
    r"""Run `cell` over `xs` with fused kernels: the same `(carry, ys)` as
    `recurrax.scan(cell, params, xs, carry, lengths=..., reverse=...,
    time_major=...)`, and its gradients.

    The input projections run first, as one GEMM (`cell.prepare` over all
    steps). Then one kernel launch runs all T steps, one program per tile of
    `tile` sequences, each holding the recurrent weights for its whole loop;
    the backward pass is a second launch that runs the adjoint recurrence
    (`dh_t = da_t Wᵀ` per step), after which the recurrent weights' gradients
    are one GEMM over all steps, `dW = Σ_t h_tᵀ da_t`.

    The cell must mark its recurrent matmuls with
    `recurrax.cells.recurrent_matmul` and keep its gates in H-wide blocks, as
    `rnn`, `lstm` (and LSTM-i/-f/-o/-b), `gru` (both reset forms), `mut1`,
    `mut2` and `mut3` do; other cells raise `KernelUnsupported`.

    Args:
      cell, params, xs, carry, lengths, reverse, time_major: as in
        `recurrax.scan`.
      matmul_dtype: the operands' dtype in every matmul (`None`: the
        params' dtype). `jnp.bfloat16` is the mixed mode: the input
        projection runs in bfloat16 and the recurrent matmuls round `h` and
        `W` to bfloat16, while products are accumulated, and the carry, gates
        and outputs kept, in float32.
      tile: sequences per program (`None`: 16 on a GPU, the whole batch in
        the interpreter); the batch is padded to a multiple of it.
      interpret: run the kernels in Pallas's interpreter (on any backend,
        the CPU included), with the same numbers; otherwise on a GPU through
        Pallas's Triton backend.

    Raises:
      KernelUnsupported (a ValueError): a cell the kernels cannot fuse, or
        (on a GPU) shapes Triton cannot hold: H and `tile` must be powers of
        two of at least 16.
      TypeError, ValueError: the arguments, as `recurrax.scan` checks them.
    """
    checks.check_cell(cell)
    reverse = checks.check_flag("reverse", reverse)
    time_major = checks.check_flag("time_major", time_major)
    interpret = checks.check_flag("interpret", interpret)
    matmul_dtype = _check_matmul_dtype(matmul_dtype)
    tile = _check_tile(tile)
    if not interpret and backend() != "gpu":
        raise KernelUnsupported(
            f"recurrax.kernels.scan: interpret=False runs on a GPU, and the backend here is "
            f"{backend()!r}; pass interpret=True to run the kernels in Pallas's "
            f"interpreter")
    run = setup_run(cell, params, xs, carry, lengths, time_major)
    xs = run.xs if time_major else jnp.moveaxis(run.xs, run.time_axis, 0)
    T, batch_shape = xs.shape[0], run.batch_shape
    B = math.prod(batch_shape)
    matmul_dtype, dtype, pxs = _prepare(cell, params, xs, matmul_dtype)
    carry0 = jax.tree.map(lambda c: c.reshape(B, *c.shape[len(batch_shape):]).astype(dtype),
                          run.carry)
    plan = _plan.plan(cell, params, pxs.shape[-1], carry0, B)
    tile = tile or (B if interpret else GPU_TILE)
    padded = -(-B // tile) * tile
    if not interpret:
        _check_triton(plan, tile, carry0)
    leaves, tree = jax.tree.flatten(carry0)
    weight_bytes = sum(params[n].size for n in plan.names) * jnp.dtype(matmul_dtype).itemsize
    config = Config(cell, plan, T, padded, tile, reverse, run.lengths is not None,
                    matmul_dtype, dtype, tree, interpret, weight_bytes <= _step.RESIDENT_BYTES)
    pxs = _pad(pxs.reshape(T, B, plan.n_px, plan.hidden), padded, 1)
    leaves = [_pad(leaf, padded, 0) for leaf in leaves]
    lens = None if run.lengths is None else _pad(
        run.lengths.reshape(B).astype(jnp.int32), padded, 0)
    weights = [params[n] for n in plan.names]
    others = {n: params[n] for n in plan.others}
    out = _fused(config, weights, others, pxs, leaves, lens)
    final, ys = cast(tuple[list[jax.Array], jax.Array], out)
    final = [leaf[:B].reshape(*batch_shape, *leaf.shape[1:]) for leaf in final]
    ys = ys[:, :B].reshape(T, *batch_shape, plan.hidden)
    if not time_major:
        ys = jnp.moveaxis(ys, 0, run.time_axis)
    return jax.tree.unflatten(tree, final), ys


def backend() -> str:
    """The backend the kernels compile for: `jax.default_backend()` (a test
    that lowers for a GPU on the CPU replaces it)."""
    return jax.default_backend()


def _check_matmul_dtype(matmul_dtype: Any) -> Any:
    """`matmul_dtype` as a NumPy dtype (or None), else a `ValueError`."""
    if matmul_dtype is None:
        return None
    try:
        name = jnp.dtype(matmul_dtype).name
    except TypeError:
        name = None
    if name not in _MATMUL_DTYPES:
        raise ValueError(f"recurrax.kernels.scan: matmul_dtype must be one of "
                         f"{', '.join(_MATMUL_DTYPES)} or None, got {matmul_dtype!r}")
    return jnp.dtype(matmul_dtype)


def _check_tile(tile: object) -> int | None:
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"recurrax.kernels.scan: tile must be a positive int or None, "
                         f"got {tile!r}")
    return tile


def _prepare(cell: Cell, params: Any, xs: jax.Array,
             matmul_dtype: Any) -> tuple[Any, Any, jax.Array]:
    """`(matmul_dtype, dtype, pxs)`: the input projections of all steps, one
    GEMM in `matmul_dtype` (None: the params' dtype), and the `dtype` the
    kernels compute in (at least float32)."""
    if matmul_dtype is None:
        pxs = cell.prepare(params, xs)
        return pxs.dtype, pxs.dtype, pxs
    low = jax.tree.map(lambda p: p.astype(matmul_dtype), params)
    pxs = cell.prepare(low, xs.astype(matmul_dtype))
    dtype = jnp.promote_types(pxs.dtype, jnp.float32)
    return matmul_dtype, dtype, pxs.astype(dtype)


def _check_triton(plan: _plan.Plan, tile: int, carry: Any) -> None:
    """Triton holds arrays whose sizes are powers of two, and multiplies
    matrices of at least 16 rows and columns."""
    widths = [("hidden size", plan.hidden), ("tile", tile),
              *(("carry's last axis", leaf.shape[-1]) for leaf in jax.tree.leaves(carry)),
              *(("left factor of a recurrent matmul", w) for w in plan.tap_inputs)]
    for what, n in widths:
        if n < 16 or n & (n - 1):
            raise KernelUnsupported(
                f"recurrax.kernels.scan: on a GPU the {what} must be a power of two of at "
                f"least 16, got {n}")


def _pad(a: jax.Array, size: int, axis: int) -> jax.Array:
    """Zeros appended on `axis` up to `size` (padded rows: length 0, zero inputs)."""
    extra = size - a.shape[axis]
    if not extra:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, extra)
    return jnp.pad(a, widths)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(config: Config, weights, others, pxs, carry, lengths):
    weights = _low(config, weights)
    ys, *final = forward(config, pxs, lengths, carry, weights, others, residuals=False)
    return final, ys


def _fused_fwd(config: Config, weights, others, pxs, carry, lengths):
    n = len(carry)
    ys, *rest = forward(config, pxs, lengths, carry, _low(config, weights), others,
                        residuals=True)
    final, carries_in, taps = rest[:n], rest[n: 2 * n], rest[2 * n]
    return (final, ys), (weights, others, pxs, lengths, carries_in, taps)


def _fused_bwd(config: Config, residuals, cotangents):
    weights, others, pxs, lengths, carries_in, taps = residuals
    dfinal, dys = cotangents
    dfinal = [d.astype(config.dtype) for d in dfinal]
    dpxs, dtaps, hs, dcarry, dothers = backward(
        config, pxs, lengths, carries_in, taps, dys.astype(config.dtype), dfinal,
        _low(config, weights), others)
    dweights: list[jax.Array] = [jnp.zeros(())] * len(weights)
    rows = config.T * config.batch
    for k, slots in enumerate(map(config.plan.tap_slots, range(len(config.plan.taps)))):
        A = dtaps[:, :, slots.start: slots.stop].reshape(rows, len(slots) * config.plan.hidden)
        h = hs[k].reshape(rows, -1)
        dW = _step.dot(h.T, A, config.matmul_dtype, config.dtype)  # Σ_t h_tᵀ da_t, one GEMM
        for m, block in zip(slots, jnp.split(dW, len(slots), axis=-1), strict=True):
            dweights[m] = block.astype(weights[m].dtype)
    dothers = {n: d.sum(0).astype(others[n].dtype) for n, d in dothers.items()}
    return (dweights, dothers, dpxs.astype(pxs.dtype),
            [d.astype(c.dtype) for d, c in zip(dcarry, carries_in, strict=True)], None)


def _low(config: Config, weights: list[jax.Array]) -> list[jax.Array]:
    """The recurrent weights in the matmuls' dtype, cast once per launch."""
    return [w.astype(config.matmul_dtype) for w in weights]


_fused.defvjp(_fused_fwd, _fused_bwd)

__all__ = ["GPU_TILE", "KernelUnsupported", "scan"]
