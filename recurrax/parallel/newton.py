r"""The iterations that solve `s_t = F_t(s_{t−1})`, t = 1 … T, in parallel over
time (`recurrax.parallel.problem` states the system).

Each iteration linearises every step at the current iterate `s^k` and solves
the resulting linear recurrence for all T states at once with an associative
scan (`recurrax._linear_scan`, O(log T) depth):

    s^{k+1}_t = F_t(s^k_{t−1}) + Ã_t (s^{k+1}_{t−1} − s^k_{t−1})

- `"deer"` (Lim et al., ICLR 2024): `Ã_t = J_t = ∂F_t/∂s`, Newton's
  method; O(T·N³) work and O(T·N²) memory, for small carries.
- `"quasi-deer"` (Gonzalez et al., NeurIPS 2024): `Ã_t = diag(J_t)`; every
  product elementwise, O(T·N) memory.
- `"elk"`, `"quasi-elk"`: the same linearisations with Levenberg–Marquardt
  damping (`recurrax.parallel.kalman`), which keeps the iterates near the last
  one where the linearisation is poor (an expanding recurrence).

All four reach the sequential answer: for the undamped ones, step t is exact
once step t−1 is (by induction, after k iterations the first k steps are
exact, so at most T iterations), and the damped step is zero only at the
solution. They stop when the scaled residual (`problem.residual`) is at most
`tol`, or after `max_iters` iterations, or when an iterate is not finite.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax.parallel import kalman
from recurrax.parallel import problem as P

METHODS: tuple[str, ...] = ("deer", "quasi-deer", "elk", "quasi-elk")
#: The damped methods' λ is divided by this after a step that lowers the
#: merit and multiplied by it after one that does not (Levenberg–Marquardt).
DAMPING_FACTOR = 4.0


class Outcome(NamedTuple):
    """The iterations' result: the last iterate `[T, R, N]`, how many
    iterations ran, the scaled residual of the last iterate, and whether it
    is at most `tol` (and finite)."""

    states: jax.Array
    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array


def iterate(problem: P.Problem, params: Any, method: str, tol: float, max_iters: int,
            damping: float) -> Outcome:
    """Iterate from `s^0_t = s_0` for every t (module docstring). For the
    damped methods `damping` is the first λ, adapted as Levenberg and
    Marquardt do: a step that lowers the merit `Σ_t ‖s_t − F_t(s_{t−1})‖²` is
    taken and λ divided by `DAMPING_FACTOR`; one that does not is refused and
    λ multiplied by it (every try counts as an iteration). Near the solution
    λ → 0, the undamped method's fast convergence."""
    diagonal = method.startswith("quasi")
    damped = method.endswith("elk")
    op = kalman.algebra(diagonal)
    T = problem.valid.shape[0]
    init = jnp.broadcast_to(problem.s0, (T, *problem.s0.shape))
    values0 = P.step_all(problem, params, P.previous(problem, init))
    dtype = init.dtype
    state0 = (init, jnp.zeros((), jnp.int32), P.residual(init, values0),
              _merit(init, values0), jnp.asarray(damping, dtype))

    def keep_going(state):
        _, k, r, _, _ = state
        return (k < max_iters) & (r > tol)  # False once r is NaN: not finite, stop

    def body(state):
        s, k, r, merit, lam = state
        s_prev = P.previous(problem, s)
        values, A = P.jacobians(problem, params, s_prev, diagonal)
        u = values - op.mv(A, s_prev)
        if damped:
            new = kalman.damped_step(A, u, s, problem.s0, lam, diagonal)
        else:
            new = op.scan(A, u, problem.s0)
        new_values = P.step_all(problem, params, P.previous(problem, new))
        new_r, new_merit = P.residual(new, new_values), _merit(new, new_values)
        if not damped:
            return new, k + 1, new_r, new_merit, lam
        better = new_merit < merit  # False for NaN: refused
        pick = lambda a, b: jnp.where(better, a, b)
        return (pick(new, s), k + 1, pick(new_r, r), pick(new_merit, merit),
                pick(lam / DAMPING_FACTOR, lam * DAMPING_FACTOR))

    s, k, r, _, _ = jax.lax.while_loop(keep_going, body, state0)
    return Outcome(s, k, r, r <= tol)


def _merit(states: jax.Array, values: jax.Array) -> jax.Array:
    return jnp.sum((states - values) ** 2)
