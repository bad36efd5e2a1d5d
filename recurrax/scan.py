"""Run a cell over a sequence (`scan`) or a single step (`step`)."""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp

from recurrax import _checks as checks
from recurrax import _deferred as deferred
from recurrax._deferred import WeightGrads
from recurrax.masking import broadcast_mask, sequence_mask
from recurrax.protocols import Carry, Cell

#: On CPU, `hoist=None` hoists the input projection out of the loop when a
#: batch has at most this many sequences. Measured on this project's 2-core
#: XLA CPU with `python -m benchmarks.hoist_rule` (lstm(256), D=128, T=128,
#: forward+backward, recurrent weight gradients after the loop; hoisted /
#: in-loop speed): batch 1: 1.21, 2: 1.17, 4: 1.24, 8: 0.93, 16: 0.86, 32: 0.86,
#: 64: 0.78. At small batches the in-loop projection is a thin matmul and
#: hoisting wins; at large ones, reading the big hoisted array inside
#: `lax.scan` costs more per step than the matmul it saves.
HOIST_MAX_BATCH = 4

#: On GPU, hoisting never lost: `benchmarks/gpu.sh` on an H200 (lstm, D=H/2,
#: forward+backward, hoisted / in-loop) gave 1.02 at batch 1 and 1.21–1.28 at
#: batch 16, 64 and 256 (H=512, T=256); 1.15, 1.26 and 1.40 at H=128, 256 and
#: 1024 (batch 64); 1.23 at T=64 and 1.36 at T=1024. So on every backend but
#: the CPU `hoist=None` hoists.


def default_hoist(batch_size: int, backend: str | None = None) -> bool:
    """The rule `hoist=None` follows: on CPU, hoist iff `batch_size <=
    HOIST_MAX_BATCH`; on any other backend (default: `jax.default_backend()`),
    always."""
    if (backend or jax.default_backend()) != "cpu":
        return True
    return batch_size <= HOIST_MAX_BATCH


#: On a GPU, `kernel=None` runs the fused Pallas kernel (`recurrax.kernels`)
#: for the `(batch size, hidden size)` pairs listed here, the shapes where
#: `benchmarks/gpu.sh` measured it faster than `lax.scan` forward+backward;
#: elsewhere `lax.scan`. No GPU has measured it yet (docs/performance.md), so
#: the set is empty and `kernel=None` means `lax.scan` everywhere.
PALLAS_FASTER: frozenset[tuple[int, int]] = frozenset()

Kernel = Literal["pallas", "scan"]
KERNELS: tuple[str, ...] = get_args(Kernel)


def default_kernel(batch_size: int, hidden_size: int, backend: str | None = None) -> Kernel:
    """The rule `kernel=None` follows: `"pallas"` on a GPU (default backend:
    `jax.default_backend()`) for the `(batch_size, hidden_size)` pairs in
    `PALLAS_FASTER`, else `"scan"`. On the CPU the kernels run only in
    Pallas's interpreter, a tool for testing, so always `"scan"`."""
    if (backend or jax.default_backend()) != "gpu":
        return "scan"
    return "pallas" if (batch_size, hidden_size) in PALLAS_FASTER else "scan"


def scan(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    carry: Carry | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
    hoist: bool | None = None,
    time_major: bool = True,
    weight_grads: WeightGrads = "after_loop",
    kernel: Kernel | None = None,
) -> tuple[Carry, jax.Array]:
    r"""Run `cell` over the time axis of `xs` with `jax.lax.scan` (or a fused
    kernel, see `kernel`).

    For t = 0 … T−1 (or T−1 … 0 with `reverse=True`):

        carry_{t+1}, y_t = cell.step(params, carry_t, cell.prepare(params, x_t))

    Args:
      cell: a `recurrax.Cell`.
      params: the cell's params, as `cell.init(key, D)` makes them.
      xs: `[T, *batch, D]`, or `[*batch, T, D]` with `time_major=False`.
      carry: the initial carry; `None` starts from `cell.initial_carry`.
      lengths: integers of the batch shape, each in `[0, T]`. Steps with
        `t >= lengths[b]` leave row b's carry unchanged and output `y = 0`,
        so the final carry is the one after each row's last valid step. With
        `reverse=True` each row runs from its own last valid step,
        `lengths[b] − 1`, back to 0; `ys` stays aligned with `xs`. The
        inputs of padded steps are zeroed before the cell sees them, so a NaN
        or inf there reaches neither the results nor any gradient.
      reverse: run from the last step to the first.
      unroll: steps per loop iteration, passed to `lax.scan` (`True`: all).
      remat: recompute each step in the backward pass (`jax.checkpoint`), so
        training memory grows with the carry instead of the residuals.
      hoist: `True` applies `cell.prepare` to all T steps at once before the
        loop (one large matmul), `False` inside the loop one step at a time;
        the numbers are the same. `None` picks by `default_hoist`.
      time_major: the layout of `xs` and `ys`.
      weight_grads: where the derivative computes the gradients of the
        recurrent weights (the matmuls a cell marks with
        `recurrax.cells.recurrent_matmul`, as every built-in cell does).
        `"after_loop"`: the backward loop carries only `dh_t = da_t Wᵀ` and
        `dW = Σ_t h_tᵀ da_t` is one GEMM over all steps after it
        (`recurrax._deferred`); faster, at some memory. `"in_loop"`: JAX's
        own derivative of the loop, `dW` accumulated step by step. Same
        numbers up to float rounding; both support reverse and forward mode
        (`jax.grad`, `jax.jvp`, `jax.jacfwd`) and higher derivatives. With
        `remat=True` the weight gradients stay in the loop either way.
      kernel: `"scan"` runs `lax.scan` as above; `"pallas"` the fused kernels
        of `recurrax.kernels.scan` (on a GPU, or in Pallas's interpreter on
        any other backend), same numbers up to float rounding, for the
        built-in gated cells, with `hoist`, `unroll`, `remat` and
        `weight_grads` at their defaults (the kernel hoists, has no unroll
        and no remat, and computes the weight gradients after its loop).
        `None` picks by `default_kernel`, falling back to `"scan"` for any
        cell or option the kernel does not take.

    Returns:
      `(carry, ys)`: the final carry and the outputs `ys`, `[T, *batch, H]`
      (or `[*batch, T, H]`).

    Raises:
      TypeError: an argument of the wrong kind (a flag that is not a bool,
        NumPy bools included; `xs` that is not a real or integer array; a
        list carry where the cell's is a tuple), or a cell that breaks the
        `Cell` protocol in kind (see `recurrax._checks.check_step`).
      ValueError: shapes that do not fit (xs, params, carry, lengths),
        `lengths` outside `[0, T]`, `unroll < 1`, or a cell whose `step`
        changes the carry's shapes or outputs a `y` that is not
        `[*batch, hidden_size]`. All before anything is traced.
    """
    checks.check_cell(cell)
    weight_grads = deferred.check_weight_grads("scan", weight_grads)
    reverse = checks.check_flag("reverse", reverse)
    remat = checks.check_flag("remat", remat)
    hoist = checks.check_flag("hoist", hoist, allow_none=True)
    time_major = checks.check_flag("time_major", time_major)
    unroll = checks.check_unroll(unroll)
    if kernel is not None:
        checks.check_choice("scan: kernel", kernel, KERNELS)
    run = setup_run(cell, params, xs, carry, lengths, time_major)
    options = {"hoist": hoist in (None, True), "unroll": unroll == 1, "remat": not remat,
               "weight_grads": weight_grads == "after_loop"}
    if kernel is None and all(options.values()):
        kernel = default_kernel(math.prod(run.batch_shape), cell.hidden_size)
    if kernel == "pallas":
        return _fused_kernel(cell, params, xs, carry, lengths, reverse, time_major, options)
    xs, time_axis, batch_shape, carry, lengths = (
        run.xs, run.time_axis, run.batch_shape, run.carry, run.lengths)
    if hoist is None:
        hoist = default_hoist(math.prod(batch_shape))

    if hoist:  # prepare on the layout given, then move time first (a 2-D GEMM + a copy)
        inputs = cell.prepare(params, xs)
    else:
        inputs = xs
    if not time_major:
        inputs = jax.tree.map(lambda a: jnp.moveaxis(a, time_axis, 0), inputs)

    step = functools.partial(_masked_step, cell.step)
    loop = deferred.run if weight_grads == "after_loop" else deferred.plain
    carry, ys = loop(step, cell.prepare, params, inputs, carry, lengths, hoist=hoist,
                     reverse=reverse, unroll=unroll, remat=remat)
    if not time_major:
        ys = jnp.moveaxis(ys, 0, time_axis)
    return carry, ys


def _fused_kernel(cell: Cell, params: Any, xs: jax.Array, carry: Carry | None,
                  lengths: jax.Array | None, reverse: bool, time_major: bool,
                  options: dict[str, bool]) -> tuple[Carry, jax.Array]:
    """`scan(kernel="pallas")`: `recurrax.kernels.scan`, after refusing the
    options it does not take."""
    refused = [name for name, fine in options.items() if not fine]
    if refused:
        raise ValueError(
            f"scan: kernel='pallas' takes {', '.join(refused)} only at the default "
            f"(hoist=None or True, unroll=1, remat=False, weight_grads='after_loop')")
    from recurrax import kernels  # imported on use: Pallas is not loaded by `import recurrax`
    return kernels.scan(cell, params, xs, carry, lengths=lengths, reverse=reverse,
                        time_major=time_major, interpret=jax.default_backend() != "gpu")


class Run(NamedTuple):
    """A run's inputs, checked: `xs` as an array with its padded steps zeroed,
    the time axis, the batch shape, the starting carry (`start_carry`),
    `lengths` as an array (or None) and `valid` (`[T, *batch]` time-major
    bools `t < lengths`, or None)."""

    xs: jax.Array
    time_axis: int
    batch_shape: tuple
    carry: Carry
    lengths: jax.Array | None
    valid: jax.Array | None


def setup_run(cell: Cell, params: Any, xs: jax.Array, carry: Carry | None,
              lengths: jax.Array | None, time_major: bool) -> Run:
    """Check `xs`, `params`, `carry` and `lengths` against each other and the
    cell (module docstring of `scan`, Raises), before anything is traced."""
    layout = "[T, *batch, D]" if time_major else "[*batch, T, D]"
    checks.check_array("xs", xs, 2, layout)
    xs = jnp.asarray(xs)
    time_axis = 0 if time_major else xs.ndim - 2
    T = xs.shape[time_axis]
    batch_shape = tuple(s for i, s in enumerate(xs.shape[:-1]) if i != time_axis)
    checks.check_params(cell, params, xs.shape[-1], f"xs (layout {layout}, shape {xs.shape})")
    carry = start_carry(cell, params, xs, carry, batch_shape)
    valid = None
    if lengths is not None:
        lengths = jnp.asarray(checks.check_lengths(lengths, batch_shape, T))
        # Zero the padded steps' inputs, so that what the step computes there
        # is finite: `where(valid, new, old)` in `_masked_step` stops the value,
        # and a finite step's derivative times a zero cotangent stops the
        # gradient (a NaN or inf input would give 0 · NaN = NaN).
        mask = sequence_mask(lengths, T, time_major)
        xs = jnp.where(mask[..., None], xs, jnp.zeros((), xs.dtype))
        valid = mask if time_major else jnp.moveaxis(mask, time_axis, 0)
    return Run(xs, time_axis, batch_shape, carry, lengths, valid)


def _masked_step(step, params, carry, t, px, lengths):
    """`cell.step`, except that rows with `t >= lengths` keep their carry and
    output zeros."""
    new_carry, y = step(params, carry, px)
    if lengths is not None:
        valid = t < lengths
        new_carry = jax.tree.map(
            lambda new, old: jnp.where(broadcast_mask(valid, new), new, old), new_carry, carry)
        y = jnp.where(broadcast_mask(valid, y), y, jnp.zeros_like(y))
    return new_carry, y


def start_carry(cell: Cell, params: Any, xs: jax.Array, carry: Carry | None,
                batch_shape: tuple) -> Carry:
    """The carry a run over `xs` starts from: `cell.initial_carry` in the
    result dtype (the dtype `prepare` computes in) when `carry` is None, else
    `carry` checked against the batch shape and cast to the dtypes `step`
    returns. Checks on abstract values that the cell keeps its protocol
    (`recurrax._checks.check_step`)."""
    x_t = jax.ShapeDtypeStruct((*batch_shape, xs.shape[-1]), xs.dtype)  # one step's input
    px = checks.check_prepare(cell, params, x_t)
    dtype = checks.check_result_dtype(px, xs.dtype)
    if carry is None:
        checks.check_initial_carry_signature(cell)
        carry = cell.initial_carry(batch_shape, dtype)
        checks.check_initial_carry(cell, carry, batch_shape)
        checks.check_step(cell, params, carry, px, batch_shape)
        return carry
    checks.check_carry(cell, carry, batch_shape, dtype)
    out = checks.check_step(cell, params, carry, px, batch_shape, same_dtypes=False)
    return jax.tree.map(lambda c, o: jnp.asarray(c).astype(o.dtype), carry, out[0])


def step(cell: Cell, params: Any, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
    """One time step: `cell.step(params, carry, cell.prepare(params, x))`.

    For sampling and decoding. `x` is `[*batch, D]`, `carry` matches
    `cell.initial_carry(batch)`; returns `(carry, y)`, `y` of shape `[*batch, H]`.
    """
    checks.check_cell(cell)
    checks.check_array("x", x, 1, "[*batch, D]")
    x = jnp.asarray(x)
    checks.check_params(cell, params, x.shape[-1], f"x (shape {x.shape})")
    px = checks.check_prepare(cell, params, x)
    checks.check_carry(cell, carry, x.shape[:-1], checks.check_result_dtype(px, x.dtype))
    out = cell.step(params, carry, cell.prepare(params, x))
    checks.check_step_output(cell, carry, out, x.shape[:-1], same_dtypes=False)
    return out
