r"""`scan`'s backward pass with the recurrent weights' gradients after the loop.

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
(`python -m benchmarks.levers`, README "Speed") this gave 1.20–1.26× on lstm
forward+backward at batch 1, 1.06–1.18× at batch 32 and 1.02× at batch 64.
Taking the input projection's gradient out of the loop too, when `prepare`
runs inside it, measured slower than leaving it there (0.93–0.96× at batch 32
and 64), so it stays.

How: a cell marks its recurrent matmuls by computing them with
`recurrax.cells._common.recurrent(params, h, names)`. Inside `scan`'s loop
that call returns `h @ stop_gradient(W) + z_t`, where `z_t` is a slice of a
zero array passed in as a scanned input, and hands `h_t` out as an extra
output; the cotangent of `z` is then exactly the stacked `da_t`, and the
custom VJP around the loop adds `Hᵀ A` to the named params. Outside a loop
(`recurrax.step`, sampling), or under a transformation applied inside the
step (a step wrapped in `jax.checkpoint`, a `vmap` or `cond` within it), it is
the plain `h @ W`, differentiated in the loop; a cell that never calls it runs
the plain loop.

Memory: the zero array (`T·batch·width` per marked matmul, which XLA
materialises) and the stacked `h_t` come on top of autodiff's residuals
(lstm forward+backward at B=64, H=512: 2323 against 1812 MiB at T=1024). So
with `scan(remat=True)`, whose point is memory, the loop is differentiated
by JAX as is. The gradients are autodiff's up to float
rounding (tested against it and against finite differences).

One limit: a `jax.custom_vjp` has no forward-mode derivative, so
`jax.jvp`/`jax.jacfwd` through `scan` need `with autodiff_in_loop(): ...`
around the tracing, which restores JAX's own differentiation of the loop.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.extend.core
import jax.numpy as jnp

_state = threading.local()


@contextlib.contextmanager
def autodiff_in_loop():
    """Within this block `scan` lets JAX differentiate its loop as is (every
    weight gradient accumulated inside the loop): slower, but it supports
    forward mode (`jax.jvp`, `jax.jacfwd`). The choice is made when `scan` is
    traced, so wrap the tracing (the `jit`ted call's first run)."""
    previous = getattr(_state, "in_loop", False)
    _state.in_loop = True
    try:
        yield
    finally:
        _state.in_loop = previous


def deferring() -> bool:
    """Whether `scan` defers weight gradients (not inside `autodiff_in_loop`)."""
    return not getattr(_state, "in_loop", False)


class _Tap(NamedTuple):
    """One recurrent matmul of a step: its output's shape (one step) and the
    params it multiplies by, in order."""
    out: jax.ShapeDtypeStruct
    names: tuple


class _Recorder:
    """The taps of the step being traced. `zs` (one slice per tap) switch on
    injection; without them the recorder only learns the taps' shapes."""

    def __init__(self, zs=None):
        self.zs = zs
        self.taps: list[_Tap] = []
        self.hs: list[jax.Array] = []
        self.trace = jax.extend.core.get_opaque_trace_state()  # the loop body's

    def here(self) -> bool:
        """Whether the caller traces at the recorder's level: not inside a
        transformation applied within the step (`jax.checkpoint`, `vmap`,
        `cond`, ...), whose values must not leave it by a side channel."""
        return jax.extend.core.get_opaque_trace_state() == self.trace


@contextlib.contextmanager
def _recording(recorder: _Recorder):
    stack = getattr(_state, "recorders", [])
    _state.recorders = [*stack, recorder]
    try:
        yield recorder
    finally:
        _state.recorders = stack


def recurrent_matmul(h: jax.Array, W: jax.Array, names) -> jax.Array:
    """`h @ W`, where `W` is the params `names` concatenated along their last
    axis (`recurrax.cells._common.recurrent` builds it): a step's matmul by
    recurrent weights. Same value everywhere; inside `scan`'s loop its weight
    gradient is computed after the loop (see the module docstring)."""
    names = tuple(names)
    stack = getattr(_state, "recorders", [])
    if not stack or not stack[-1].here():  # outside a loop, or nested inside the step
        return h @ W
    recorder = stack[-1]
    k = len(recorder.taps)
    out = h @ jax.lax.stop_gradient(W)
    recorder.taps.append(_Tap(jax.ShapeDtypeStruct(out.shape, out.dtype), names))
    if recorder.zs is None:
        return out
    recorder.hs.append(h)
    return out + recorder.zs[k]


def run(step: Callable, prepare: Callable, params: Any, inputs: jax.Array, carry: Any,
        lengths: jax.Array | None, *, hoist: bool, reverse: bool, unroll, remat: bool):
    """`(carry, ys)` of the loop `carry, y_t = step(params, carry, t, px_t, lengths)`
    over time-major `inputs` (`px = inputs[t]` when `hoist`, else
    `prepare(params, inputs[t])`), with the weight gradients after the loop."""
    T = _length(inputs)
    one_step = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), inputs)
    px_t = one_step if hoist else jax.eval_shape(prepare, params, one_step)
    found = []

    def probe(params, carry, px, lengths):  # one step, to learn its taps
        with _recording(_Recorder()) as recorder:
            out = step(params, carry, jnp.int32(0), px, lengths)
        found.extend(recorder.taps)
        return out

    jax.eval_shape(probe, params, carry, px_t, lengths)
    taps = tuple(found)
    if not taps or remat:  # no marked matmuls; or remat, whose memory saving this would undo
        return plain(step, prepare, params, inputs, carry, lengths, hoist=hoist,
                     reverse=reverse, unroll=unroll, remat=remat)

    def tapped(params, inputs, carry, lengths, zs):
        def body(carry, scanned):
            t, inp, z = scanned
            px = inp if hoist else prepare(params, inp)
            with _recording(_Recorder(z)) as rec:
                carry, y = step(params, carry, t, px, lengths)
            return carry, (y, tuple(rec.hs))

        carry, (ys, hs) = jax.lax.scan(body, carry, (jnp.arange(T), inputs, zs),
                                       reverse=reverse, unroll=unroll)
        return (carry, ys), hs

    @jax.custom_vjp
    def loop(params, inputs, carry, lengths):
        return plain(step, prepare, params, inputs, carry, lengths, hoist=hoist,
                     reverse=reverse, unroll=unroll, remat=remat)

    def loop_fwd(params, inputs, carry, lengths):
        zs = tuple(jnp.zeros((T, *tap.out.shape), tap.out.dtype) for tap in taps)
        out, vjp, hs = jax.vjp(lambda p, i, c, z: tapped(p, i, c, lengths, z),
                               params, inputs, carry, zs, has_aux=True)
        return out, (vjp, hs, params)

    def loop_bwd(residuals, cts):
        vjp, hs, params = residuals
        dparams, dinputs, dcarry, dzs = vjp(cts)
        dparams = dict(dparams)  # cells with taps keep their params in a flat dict (docs/design.md)
        for tap, h, dz in zip(taps, hs, dzs, strict=True):
            dW = h.reshape(-1, h.shape[-1]).T @ dz.reshape(-1, dz.shape[-1])
            ends = itertools.accumulate(params[name].shape[-1] for name in tap.names)
            for name, block in zip(tap.names, jnp.split(dW, list(ends)[:-1], axis=-1), strict=True):
                dparams[name] = dparams[name] + block.astype(dparams[name].dtype)
        return dparams, dinputs, dcarry, None

    loop.defvjp(loop_fwd, loop_bwd)
    return loop(params, inputs, carry, lengths)


def plain(step, prepare, params, inputs, carry, lengths, *, hoist, reverse, unroll, remat):
    """The same loop as `run`, differentiated by JAX as is."""
    def body(carry, scanned):
        t, inp = scanned
        px = inp if hoist else prepare(params, inp)
        return step(params, carry, t, px, lengths)

    body = jax.checkpoint(body) if remat else body
    return jax.lax.scan(body, carry, (jnp.arange(_length(inputs)), inputs),
                        reverse=reverse, unroll=unroll)


def _length(inputs) -> int:
    """T, the leading axis of the (time-major) inputs."""
    return jax.tree.leaves(inputs)[0].shape[0]
