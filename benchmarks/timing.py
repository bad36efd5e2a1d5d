"""Timing helpers shared by the benchmarks: interleaved repeats, medians, and
LSTM FLOP counts. This machine is shared and noisy, so every comparison is
made between implementations timed round-robin in the same process."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import jax


def block(tree) -> None:
    jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a,
                 tree)


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int = 7,
                        warmup: int = 2) -> dict[str, list[float]]:
    """Call each (already jitted) thunk `warmup` times, then time them
    round-robin for `rounds` rounds; return every implementation's seconds."""
    for fn in fns.values():
        for _ in range(warmup):
            block(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            block(fn())
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def lstm_flops(B: int, T: int, D: int, H: int, backward: bool) -> float:
    """Matmul FLOPs of an LSTM over a sequence: forward `2·B·T·(D+H)·4H`; the
    backward pass needs two more matmuls of the same size (input and weight
    gradients), so forward+backward is 3×."""
    forward = 2.0 * B * T * (D + H) * 4 * H
    return forward * (3.0 if backward else 1.0)
