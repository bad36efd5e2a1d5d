"""recurrax `lstm(H)` forward+backward (gradients for the params) under
several `recurrax.scan` settings, as thunks to time side by side: the shared
piece of the rules measured for `hoist` (`benchmarks.hoist_rule`) and `unroll`
(`benchmarks.unroll_rule`)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

import recurrax
from benchmarks.timing import interleaved_medians, median


def thunks(B: int, T: int, D: int, H: int, variants: dict[str, dict]) -> dict[str, Callable]:
    """One jitted zero-argument thunk per variant; `variants[name]` are the
    keyword arguments given to `recurrax.scan` (e.g. `{"hoist": True}`)."""
    cell = recurrax.cells.lstm(H)
    params = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (T, B, D))

    def make(scan_kw: dict):
        @jax.jit
        def run(params, xs):
            return jax.grad(lambda p: jnp.sum(recurrax.scan(cell, p, xs, **scan_kw)[1]))(params)
        return lambda: run(params, xs)

    return {name: make(kw) for name, kw in variants.items()}


def tokens_per_s(B: int, T: int, D: int, H: int, variants: dict[str, dict],
                 rounds: int) -> dict[str, float]:
    """Median tokens/s (B·T per second) of every variant, timed round-robin."""
    times = interleaved_medians(thunks(B, T, D, H, variants), rounds=rounds)
    return {name: B * T / median(ts) for name, ts in times.items()}
