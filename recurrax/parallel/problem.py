r"""A recurrence as a system of equations over the whole sequence.

Write `s_t ∈ R^N` for one row's carry after step t, flattened
(`recurrax._flat`), and `F_t(s) = cell.step(params, s, px_t)` for one step
(the identity at a padded step, `t ≥ lengths`). The sequential answer is the
unique solution `s_{1:T}` of the T equations

    s_t = F_t(s_{t−1}),    t = 1 … T,    s_0 given,

and the parallel evaluators find it by iterating on all T states at once
(`recurrax.parallel.newton`). This module holds what they share: the one-row
step `F` and its Jacobians `J_t = ∂F_t/∂s` at every step of a trajectory,
vectorised over time and batch rows, and the scaled residual

    r = max_{t,i} |s_t − F_t(s_{t−1})|_i / (1 + |F_t(s_{t−1})|_i)

that says when the iterates have converged (`r ≤ tol`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax._flat import ravel, unraveler
from recurrax.protocols import Carry, Cell

#: The diagonal Jacobians are computed this many matrix entries at a time
#: (rows × N²), so quasi-DEER's memory stays O(T·N) however long the sequence.
JACOBIAN_CHUNK_ENTRIES = 2**26


class Problem(NamedTuple):
    """One sequence's equations, flattened: `pxs` the prepared inputs,
    time-major `[T, R, ...]` with the batch rows flattened to R; `valid`
    `[T, R]` bools (all True without lengths); `s0` `[R, N]` the initial carry, flat. `unravel`
    turns a flat `[1, N]` back into a one-row carry for `cell.step`."""

    cell: Cell
    unravel: Callable[[jax.Array], Carry]
    s0: jax.Array
    pxs: Any
    valid: jax.Array


def make(cell: Cell, carry: Carry, pxs: Any, valid: jax.Array | None,
         batch_shape: tuple) -> Problem:
    """The flat problem of a run: time-major `pxs` `[T, *batch, ...]`, the
    initial `carry`, `valid` `[T, *batch]` or None."""
    T = jax.tree.leaves(pxs)[0].shape[0]
    R = math.prod(batch_shape)
    flat = jax.tree.map(lambda a: a.reshape(T, R, *a.shape[1 + len(batch_shape):]), pxs)
    s0 = ravel(carry).reshape(R, -1)
    v = jnp.ones((T, R), bool) if valid is None else valid.reshape(T, R)
    one_row = jax.tree.map(
        lambda c: jax.ShapeDtypeStruct((1, *c.shape[len(batch_shape):]), c.dtype), carry)
    return Problem(cell, unraveler(one_row), s0, flat, v)


def step_row(problem: Problem, params: Any, s: jax.Array, px: Any, valid: jax.Array) -> jax.Array:
    """`F_t(s)` for one row: the cell's step on a batch of one, flattened; the
    identity where `valid` is False."""
    add_batch = jax.tree.map(lambda a: a[None], px)
    new, _ = problem.cell.step(params, problem.unravel(s[None]), add_batch)
    new = ravel(new)[0].astype(s.dtype)
    return jnp.where(valid, new, s)


def step_all(problem: Problem, params: Any, s_prev: jax.Array) -> jax.Array:
    """`F_t(s_{t−1})` for every t and row at once: `s_prev` `[T, R, N]`."""
    fn = jax.vmap(jax.vmap(lambda s, px, v: step_row(problem, params, s, px, v)))
    return fn(s_prev, problem.pxs, problem.valid)


def previous(problem: Problem, states: jax.Array) -> jax.Array:
    """`s_{0:T−1}` from `s_{1:T}`: the state each step starts from."""
    return jnp.concatenate([problem.s0[None].astype(states.dtype), states[:-1]])


def jacobians(problem: Problem, params: Any, s_prev: jax.Array,
              diagonal: bool) -> tuple[jax.Array, jax.Array]:
    """`(F_t(s_{t−1}), J_t)` at every step and row: `J_t = ∂F_t/∂s` at
    `s_{t−1}`, `[T, R, N, N]`, or its diagonal `[T, R, N]` (computed a chunk
    of rows at a time, `JACOBIAN_CHUNK_ENTRIES`, never whole)."""
    T, R, N = s_prev.shape

    def one(s, px, v):  # -> (F(s), J or diag J) of one row
        def f(s):
            out = step_row(problem, params, s, px, v)
            return out, out
        J, value = jax.jacrev(f, has_aux=True)(s)
        return value, (jnp.diagonal(J) if diagonal else J)

    rows = (s_prev.reshape(T * R, N),
            jax.tree.map(lambda a: a.reshape(T * R, *a.shape[2:]), problem.pxs),
            problem.valid.reshape(T * R))
    if diagonal and T * R * N * N > JACOBIAN_CHUNK_ENTRIES:
        chunk = max(1, JACOBIAN_CHUNK_ENTRIES // (N * N))
        value, J = jax.lax.map(lambda r: one(*r), rows, batch_size=chunk)
    else:
        value, J = jax.vmap(one)(*rows)
    return value.reshape(T, R, N), J.reshape(T, R, *J.shape[1:])


def residual(states: jax.Array, values: jax.Array) -> jax.Array:
    """The scaled residual `max |s_t − F_t(s_{t−1})| / (1 + |F_t(s_{t−1})|)`
    (module docstring); NaN if anything is not finite."""
    r = jnp.max(jnp.abs(states - values) / (1 + jnp.abs(values)))
    finite = jnp.all(jnp.isfinite(values)) & jnp.all(jnp.isfinite(states))
    return jnp.where(finite, r, jnp.nan)


def sequential(problem: Problem, params: Any) -> jax.Array:
    """`s_{1:T}` by running `F` one step after another (`lax.scan`): the
    reference the iterations must reach, and the fallback when they do not."""
    rows = jax.vmap(lambda s, px, v: step_row(problem, params, s, px, v))

    def body(s, inputs):
        px, v = inputs
        s = rows(s, px, v)
        return s, s

    return jax.lax.scan(body, problem.s0, (problem.pxs, problem.valid))[1]
