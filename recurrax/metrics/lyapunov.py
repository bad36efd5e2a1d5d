r"""How fast a recurrence forgets a perturbation: `largest_lyapunov_exponent`.

Write `s_t` for the carry after t steps as one flat vector per row
(`recurrax._flat.ravel`: the carry's leaves side by side, `[c, h]` for the
LSTM), one step `s_{t+1} = F(s_t, x_t)` and its recurrent Jacobian
`J_t = ∂s_{t+1}/∂s_t` (K × K). A small perturbation δ of `s_0` is carried to
`δ_n ≈ J_{n−1} ⋯ J_1 J_0 δ` after n steps, and for almost every δ

    λ = lim_{n→∞} (1/n) log ‖J_{n−1} ⋯ J_0 δ‖

is the largest Lyapunov exponent of the trajectory: perturbations grow (or
shrink) like e^{λ n}. It is estimated by the power iteration of the tangent
map (Benettin et al. 1980), one Jacobian-vector product per step:

    v_0 = u / ‖u‖,   u_k = 1 + ½ sin(1 + 2.4 k),   k = 0 … K−1
    w_t = J_t v_t,   v_{t+1} = w_t / ‖w_t‖,
    λ̂ = (1/n) Σ_{t=0}^{n−1} log ‖w_t‖,        n = min(T, steps)

(natural log, per step). The products telescope, `Σ_t log ‖w_t‖ =
log ‖J_{n−1} ⋯ J_0 v_0‖`, so λ̂ is the growth rate of that one perturbation,
normalised at every step so that nothing overflows or underflows. `v_0` is a
fixed unit vector, the same for every row and every call (all ones, which
reaches every unit, perturbed by a fixed deterministic pattern so that it is
not orthogonal to a leading direction that sums to zero); any other start
changes λ̂ by O(1/n). For a constant Jacobian J (a linear recurrence) λ̂ tends
to `log ρ(J)`, the log of its spectral radius: `log max|a|` for
`h' = a ⊙ h + x`.

Reading it: λ̂ < 0, the recurrence contracts along this trajectory: a
perturbation of the carry dies out within about 1/|λ̂| steps, the state is a
function of the recent inputs, and the parallel-in-time Newton evaluators
(`recurrax.parallel`, DEER and its quasi/ELK variants) converge in few
iterations. λ̂ > 0, it expands: perturbations grow, the recurrence is chaotic
or unstable, and those evaluators need many iterations (up to T) or fail;
`recurrax.parallel.scan(method="auto")` falls back to the sequential scan
there. Near 0, long memory: neither.

`J_t v_t` comes from `jax.jvp` through `cell.step` (the full Jacobian is never
formed): one forward-mode pass per step, all n steps in one compiled
`lax.scan`. Rows never interact, so each row has its own v_t and its own λ̂.
Every row runs all n steps (there is no `lengths`). A step whose `J_t v_t` is
exactly zero gives λ̂ = −inf (the perturbation is gone).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from recurrax import _checks as checks
from recurrax._flat import ravel, unraveler
from recurrax.protocols import Carry, Cell
from recurrax.scan import setup_run


def initial_tangent(K: int, dtype: Any = jnp.float32) -> jax.Array:
    """`v_0`, the unit vector the estimate starts from: `u / ‖u‖` with
    `u_k = 1 + ½ sin(1 + 2.4 k)` (module docstring)."""
    u = 1 + 0.5 * jnp.sin(1 + 2.4 * jnp.arange(K, dtype=dtype))
    return u / jnp.linalg.norm(u)


def largest_lyapunov_exponent(cell: Cell, params: Any, xs: jax.Array, carry: Carry | None = None,
                              *, steps: int | None = None, time_major: bool = True) -> jax.Array:
    r"""Estimate the largest Lyapunov exponent of the recurrence driven by `xs`
    (module docstring): `λ̂ = (1/n) Σ_t log ‖J_t v_t‖`, per step, natural log.

    Args:
      cell: a `recurrax.Cell` whose carry leaves are `[*batch, width]`.
      params: the cell's params.
      xs: `[T, *batch, D]` (`[*batch, T, D]` with `time_major=False`); at
        least one step.
      carry: the initial carry `s_0`; `None` starts from `cell.initial_carry`.
      steps: average over the first `n = min(T, steps)` steps only (an int
        >= 1); `None`: all T.
      time_major: the layout of `xs`.

    Returns:
      λ̂ of the batch shape, in the dtype the cell computes in: negative where
      the recurrence contracts (perturbations die out; the parallel Newton
      evaluators converge in few iterations), positive where it expands
      (chaotic or unstable).

    Raises:
      TypeError, ValueError: as `recurrax.scan` for the cell, params, xs,
        carry and `time_major` (`recurrax.scan.setup_run`); `xs` without a
        time step; `steps` not an int >= 1; a carry leaf that is not
        `[*batch, width]`. All before anything is traced.
    """
    checks.check_cell(cell)
    time_major = checks.check_flag("time_major", time_major)
    if steps is not None:
        steps = checks.check_size("steps", steps)
    run = setup_run(cell, params, xs, carry, None, time_major)
    xs = jnp.moveaxis(run.xs, run.time_axis, 0)
    if xs.shape[0] < 1:
        raise ValueError(f"xs: needs at least one time step, got shape {run.xs.shape} "
                         f"(layout {'[T, *batch, D]' if time_major else '[*batch, T, D]'})")
    batch_shape, carry = run.batch_shape, run.carry
    bad = [jnp.shape(leaf) for leaf in jax.tree.leaves(carry)
           if jnp.ndim(leaf) != len(batch_shape) + 1]
    if bad:
        raise ValueError(f"carry: the Lyapunov exponent needs carry leaves of shape "
                         f"[*batch, width] with batch shape {batch_shape}; got leaves of "
                         f"shapes {bad}")
    n = xs.shape[0] if steps is None else min(xs.shape[0], steps)
    return _exponent(cell, params, xs[:n], carry)


@functools.partial(jax.jit, static_argnums=0)
def _exponent(cell: Cell, params, xs, carry0) -> jax.Array:
    unravel = unraveler(carry0)
    s0 = ravel(carry0)
    v0 = jnp.broadcast_to(initial_tangent(s0.shape[-1], s0.dtype), s0.shape)

    def body(state, px):
        s, v, total = state
        one_step = lambda s: ravel(cell.step(params, unravel(s), px)[0])
        s, w = jax.jvp(one_step, (s,), (v,))
        norm = jnp.linalg.norm(w, axis=-1)
        v = jnp.where(norm[..., None] > 0, w / jnp.where(norm > 0, norm, 1)[..., None], v)
        return (s, v, total + jnp.log(norm)), None

    zero = jnp.zeros(s0.shape[:-1], s0.dtype)
    (_, _, total), _ = jax.lax.scan(body, (s0, v0, zero), cell.prepare(params, xs))
    return total / xs.shape[0]
