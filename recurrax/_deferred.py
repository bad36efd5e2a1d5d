r"""`scan`'s derivative with the recurrent weights' gradients after the loop
(`scan(weight_grads="after_loop")`, the default).

JAX differentiates `lax.scan` by running the transposed step in a reverse
loop, so every matmul of the step is transposed inside that loop. For a
recurrent matmul `a_t = h_t W` (h the carry, or a function of it) that means,
per step, both the product the recurrence needs, `dh_t = da_t Wᵀ`, and the
weight gradient `dW += h_tᵀ da_t`: a thin matmul whose inner dimension is the
batch, plus an update of the whole accumulator.

Only `dh_t` has to be in the loop. Here the loop keeps it and emits the
gradients `da_t` of every step; after it, one GEMM over all `T·batch` rows

    dW = Σ_t h_tᵀ da_t = Hᵀ A

the way cuDNN and PyTorch's CPU LSTM do it. On this project's 2-core CPU
(`python -m benchmarks.levers`, docs/performance.md) this gave 1.20–1.26× on
lstm forward+backward at batch 1, 1.06–1.18× at batch 32 and 1.02× at batch
64. Taking the input projection's gradient out of the loop too, when `prepare`
runs inside it, measured slower than leaving it there (0.93–0.96× at batch 32
and 64), so it stays.

How: a cell marks its recurrent matmuls by computing them with
`recurrax.cells.recurrent_matmul(params, h, names)`. The loop is a
`jax.custom_jvp` whose derivative is written so that its transpose is the
GEMM above. Its JVP rule runs the loop once (`jax.linearize`) in a tapped
form: each marked matmul is `h_t @ W + z_t` with `W` held fixed (closed over,
not an argument of `linearize`), `z_t` a slice of a zero array passed in as a
scanned input, and `h_t` comes out as an extra output. The weight's tangent
`dW` reaches the tangent loop only through `z`:

    u = H · dW        (all steps at once, one GEMM outside the loop)
    d(h_t W) = dh_t W + u_t

Forward mode (`jax.jvp`, `jax.jacfwd`) evaluates this as it stands. Reverse
mode transposes it: the backward loop carries `dh_t = da_t Wᵀ` only, the
cotangent of `u` is the stacked `A = [da_t]`, and the transpose of `u = H dW`
is `dW = Hᵀ A` after the loop. Both modes trace the same function, so a
`jax.jit` cache entry serves either.

Outside a loop (`recurrax.step`, sampling), or under a transformation applied
inside the step (a step wrapped in `jax.checkpoint`, a `vmap` or `cond` within
it), `recurrent_matmul` is the plain `h @ W`, differentiated in the loop; a
cell that never calls it runs the plain loop. So does every cell with
`scan(weight_grads="in_loop")`: JAX's own derivative of the loop, every weight
gradient accumulated inside it.

Memory: the zero array (`T·batch·width` per marked matmul, which XLA
materialises) and the stacked `h_t` come on top of autodiff's residuals
(lstm forward+backward at B=64, H=512: 2323 against 1812 MiB at T=1024). So
with `scan(remat=True)`, whose point is memory, the loop is differentiated
by JAX as is. The gradients are autodiff's up to float rounding (tested
against it and against finite differences).

The figures above were measured with the first form of this module, a
`jax.custom_vjp` around the same tapped loop (which had no forward mode). The
present form compiles `jax.value_and_grad` of a scan to the same program: on
XLA CPU, lstm and gru (H=256, hoisted or not) gave the same instructions by
kind and count, and lstm at B=64, T=1024, D=256, H=512 the same temp +
argument + output bytes (3854 MiB; 3342 with `weight_grads="in_loop"`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple, cast, get_args

import jax
import jax.extend.core
import jax.numpy as jnp

from recurrax import _checks as checks

#: The values of `scan`'s `weight_grads`: where the recurrent weights'
#: gradients are computed.
WeightGrads = Literal["after_loop", "in_loop"]
WEIGHT_GRADS: tuple[str, ...] = get_args(WeightGrads)


def check_weight_grads(where: str, weight_grads: object) -> WeightGrads:
    """`weight_grads` itself, or a `ValueError` naming the allowed values."""
    checks.check_choice(f"{where}: weight_grads", weight_grads, WEIGHT_GRADS)
    return cast(WeightGrads, weight_grads)  # one of WEIGHT_GRADS, checked above


class _Tap(NamedTuple):
    """One recurrent matmul of a step: its output's shape (one step) and the
    params it multiplies by, in order."""
    out: jax.ShapeDtypeStruct
    names: tuple[str, ...]


class _Recorder:
    """The taps of the step being traced. `zs` (one slice per tap) and
    `weights` (each tap's `W`, held fixed) switch on injection; without them
    the recorder only learns the taps' shapes."""

    def __init__(self, zs: Sequence[jax.Array] | None = None,
                 weights: Sequence[jax.Array] = ()):
        self.zs = zs
        self.weights = weights
        self.taps: list[_Tap] = []
        self.hs: list[jax.Array] = []
        self.trace = jax.extend.core.get_opaque_trace_state()  # the loop body's

    def here(self) -> bool:
        """Whether the caller traces at the recorder's level: not inside a
        transformation applied within the step (`jax.checkpoint`, `vmap`,
        `cond`, ...), whose values must not leave it by a side channel."""
        return jax.extend.core.get_opaque_trace_state() == self.trace


#: The recorder of the loop body being traced, if any: how `marked_matmul`,
#: called deep inside a cell's step, reaches the loop that traces the step.
#: Set only while `run` traces one step; it chooses nothing.
_recorder: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "recurrax_deferred_recorder", default=None)


@contextlib.contextmanager
def _recording(recorder: _Recorder) -> Iterator[_Recorder]:
    token = _recorder.set(recorder)
    try:
        yield recorder
    finally:
        _recorder.reset(token)


def marked_matmul(h: jax.Array, W: jax.Array, names: Sequence[str]) -> jax.Array:
    """`h @ W`, where `W` is the params `names` concatenated along their last
    axis (`recurrax.cells.recurrent_matmul` builds it): a step's matmul by
    recurrent weights. Same value everywhere; inside `scan`'s loop its weight
    gradient is computed after the loop (see the module docstring)."""
    recorder = _recorder.get()
    if recorder is None or not recorder.here():  # outside a loop, or nested inside the step
        return h @ W
    if recorder.zs is None:  # learning the step's taps
        out = h @ W
        recorder.taps.append(_Tap(jax.ShapeDtypeStruct(out.shape, out.dtype), tuple(names)))
        return out
    k = len(recorder.hs)  # the k-th tap of the step: W is the value of weights[k]
    recorder.hs.append(h)
    return h @ recorder.weights[k] + recorder.zs[k]


def run(step: Callable, prepare: Callable, params: Any, inputs: Any, carry: Any,
        lengths: jax.Array | None, *, hoist: bool, reverse: bool, unroll: int | bool,
        remat: bool) -> tuple[Any, Any]:
    """`(carry, ys)` of the loop `carry, y_t = step(params, carry, t, px_t, lengths)`
    over time-major `inputs` (`px = inputs[t]` when `hoist`, else
    `prepare(params, inputs[t])`), with the weight gradients after the loop."""
    untapped = functools.partial(plain, step, prepare, hoist=hoist, reverse=reverse,
                                 unroll=unroll, remat=remat)
    taps = _taps(step, prepare, params, inputs, carry, lengths, hoist=hoist)
    _check_names(params, taps)
    if not taps or remat:  # no marked matmuls; or remat, whose memory saving this would undo
        return untapped(params, inputs, carry, lengths)
    T = _length(inputs)

    def tapped(weights, params, inputs, carry, zs):
        """The loop with each tap computed as `h_t @ weights[k] + z_t`; also
        returns the taps' `h_t`."""
        def body(carry, scanned):
            t, inp, z = scanned
            px = inp if hoist else prepare(params, inp)
            with _recording(_Recorder(z, weights)) as rec:
                carry, y = step(params, carry, t, px, lengths)
            return carry, (y, tuple(rec.hs))

        carry, (ys, hs) = jax.lax.scan(body, carry, (jnp.arange(T), inputs, zs),
                                       reverse=reverse, unroll=unroll)
        return (carry, ys), hs

    @jax.custom_jvp
    def loop(params, inputs, carry):
        return untapped(params, inputs, carry, lengths)

    @loop.defjvp
    def loop_jvp(primals, tangents):
        # The taps' weights enter the loop held fixed (closed over, not an
        # argument of `linearize`), so their tangent reaches it through `z`
        # alone; as values of any outer transformation they stay
        # differentiable (forward over reverse).
        weights = tuple(_fused(primals[0], tap.names) for tap in taps)
        zs = tuple(jnp.zeros((T, *tap.out.shape), tap.out.dtype) for tap in taps)
        out, linear, hs = jax.linearize(functools.partial(tapped, weights), *primals, zs,
                                        has_aux=True)
        dparams = tangents[0]
        us = tuple(_rows_times(h, _fused(dparams, tap.names)).astype(tap.out.dtype)
                   for tap, h in zip(taps, hs, strict=True))
        return out, linear(*tangents, us)

    return loop(params, inputs, carry)


def plain(step: Callable, prepare: Callable, params: Any, inputs: Any, carry: Any,
          lengths: jax.Array | None, *, hoist: bool, reverse: bool, unroll: int | bool,
          remat: bool) -> tuple[Any, Any]:
    """The same loop as `run`, differentiated by JAX as is."""
    def body(carry, scanned):
        t, inp = scanned
        px = inp if hoist else prepare(params, inp)
        return step(params, carry, t, px, lengths)

    body = jax.checkpoint(body) if remat else body
    return jax.lax.scan(body, carry, (jnp.arange(_length(inputs)), inputs),
                        reverse=reverse, unroll=unroll)


def _taps(step: Callable, prepare: Callable, params: Any, inputs: Any, carry: Any,
          lengths: jax.Array | None, *, hoist: bool) -> tuple[_Tap, ...]:
    """The marked matmuls of one step, in the order the step calls them
    (learnt by tracing one step abstractly)."""
    one_step = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), inputs)
    px_t = one_step if hoist else jax.eval_shape(prepare, params, one_step)
    found: list[_Tap] = []

    def probe(params, carry, px, lengths):
        with _recording(_Recorder()) as recorder:
            out = step(params, carry, jnp.int32(0), px, lengths)
        found.extend(recorder.taps)
        return out

    jax.eval_shape(probe, params, carry, px_t, lengths)
    return tuple(found)


def _check_names(params: Any, taps: Sequence[_Tap]) -> None:
    """A `ValueError` unless every marked matmul names keys of `params`, the
    params `scan` was given (the weight gradients are added to those)."""
    keys = params.keys() if isinstance(params, Mapping) else ()
    missing = sorted({name for tap in taps for name in tap.names} - set(keys))
    if missing:
        raise ValueError(
            f"recurrent_matmul: the names {missing} are not keys of the params given to "
            f"scan; a cell that marks its recurrent matmuls must keep those weights at "
            f"the top level of its params dict"
        )


def _fused(params: Any, names: Sequence[str]) -> jax.Array:
    """The named params (or their tangents) side by side on the last axis:
    the `W` of a marked matmul. Cells with marked matmuls keep their params
    in a flat dict (docs/design.md)."""
    return jnp.concatenate([params[name] for name in names], axis=-1)


def _rows_times(h: jax.Array, W: jax.Array) -> jax.Array:
    """`h @ W` with all leading axes of `h` (time and batch) flattened into
    the rows of one 2-D GEMM, so that its transpose is `Hᵀ A` over all rows."""
    return (h.reshape(-1, h.shape[-1]) @ W).reshape(*h.shape[:-1], W.shape[-1])


def _length(inputs: Any) -> int:
    """T, the leading axis of the (time-major) inputs."""
    return jax.tree.leaves(inputs)[0].shape[0]


__all__ = ["WEIGHT_GRADS", "WeightGrads", "check_weight_grads", "marked_matmul", "plain", "run"]
