"""Timing helpers shared by the benchmarks: interleaved repeats, medians, and
matmul FLOP counts. This machine is shared and noisy, so every comparison is
made between implementations timed round-robin in the same process."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import jax


def block(tree) -> None:
    """Wait for every JAX array in `tree` (other leaves, e.g. torch tensors,
    are left alone: a torch thunk synchronises itself)."""
    jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a,
                 tree)


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int = 7,
                        warmup: int = 2, min_time: float = 0.0) -> dict[str, list[float]]:
    """Call each (already jitted) thunk `warmup` times, then time them
    round-robin for `rounds` rounds; return every implementation's seconds
    per call.

    With `min_time > 0`, a thunk whose call takes less than `min_time`
    seconds is called `k = ceil(min_time / t)` times back to back per sample
    (`t` from one timed call after the warm-up), waiting only after the last
    call; the sample is the mean over the k calls. This keeps samples of
    sub-millisecond calls (small shapes on a GPU) above timer and dispatch noise.
    """
    for fn in fns.values():
        for _ in range(warmup):
            block(fn())
    calls = {name: 1 for name in fns}
    if min_time > 0:
        for name, fn in fns.items():
            start = time.perf_counter()
            block(fn())
            once = max(time.perf_counter() - start, 1e-6)
            calls[name] = max(1, min(1000, math.ceil(min_time / once)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            k = calls[name]
            start = time.perf_counter()
            for _ in range(k - 1):
                fn()
            block(fn())
            times[name].append((time.perf_counter() - start) / k)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def rnn_flops(B: int, T: int, D: int, H: int, gates: int, backward: bool,
              input_gates: int | None = None) -> float:
    """Matmul FLOPs of a gated RNN over a sequence whose step multiplies the
    input by a `(D, input_gates·H)` matrix and the state by an `(H, gates·H)`
    one (LSTM: 4 and 4, GRU: 3, MUT1: 2, MUT2: 2 and 3; `input_gates=None`:
    the same as `gates`). Forward: `2·B·T·(D·input_gates + H·gates)·H`. The backward
    pass with gradients for the weights, the inputs and the states needs two
    more matmuls of the same size per forward matmul (`dW = xᵀ·dY`,
    `dx = dY·Wᵀ`), so forward+backward is 3× the forward. Elementwise work
    (gates, biases) is not counted."""
    input_gates = gates if input_gates is None else input_gates
    forward = 2.0 * B * T * (D * input_gates + H * gates) * H
    return forward * (3.0 if backward else 1.0)


def lstm_flops(B: int, T: int, D: int, H: int, backward: bool) -> float:
    """Matmul FLOPs of an LSTM over a sequence: `rnn_flops` with 4 gates,
    forward `2·B·T·(D+H)·4H`, forward+backward 3×."""
    return rnn_flops(B, T, D, H, 4, backward)


def jaxpr_matmul_flops(fn: Callable, *args) -> float:
    """Count the matmul FLOPs `fn(*args)` executes, from its jaxpr: every
    `dot_general` is `2 · (product of the output's dims) · (contracted size)`;
    a dot inside a `scan` counts `length` times; other sub-jaxprs (jit, remat,
    custom rules) count once. An independent check of `rnn_flops`."""
    return _flops(jax.make_jaxpr(fn)(*args).jaxpr)


def _flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            out = eqn.outvars[0].aval.shape
            total += 2.0 * math.prod(out) * math.prod(lhs[d] for d in contract)
            continue
        times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for sub in _subjaxprs(eqn.params):
            total += times * _flops(sub)
    return total


def _subjaxprs(params: dict):
    for value in params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(v, "eqns"):
                yield v
            elif hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
                yield v.jaxpr
