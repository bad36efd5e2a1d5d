r"""The states of a recurrence and their derivative by implicit differentiation.

The forward pass runs the iterations (`recurrax.parallel.newton`), falling
back to the sequential loop when they do not converge (or erring: NaN states,
`on_failure="error"`). The backward pass never differentiates through the
iterations: the solution satisfies `s_t = F_t(s_{t−1}; θ)`, so for cotangents
`ḡ_t` of the states, the adjoints

    λ_t = ḡ_t + J_{t+1}ᵀ λ_{t+1},    λ_{T+1} = 0,    J_{t+1} = ∂F_{t+1}/∂s at s_t,

give every gradient in one vectorised VJP of the steps:
`∂L/∂θ = Σ_t (∂F_t/∂θ)ᵀ λ_t`, the same for the inputs, and `∂L/∂s_0 =
J_1ᵀ λ_1`. The adjoint recurrence is linear and runs backwards in time:

- `"deer"`, `"elk"`: solved exactly by one associative scan over the
  transposed Jacobians (O(T·N³) work, O(T·N²) memory);
- `"quasi-deer"`, `"quasi-elk"`: by the same splitting as the forward pass,
  `λ^{k+1}_t = D_{t+1} λ^{k+1}_{t+1} + ḡ_t + (J_{t+1}ᵀ − D_{t+1}) λ^k_{t+1}`
  with `D` the diagonal of `Jᵀ`: each iteration one diagonal associative scan
  and one VJP of all steps (O(T·N) memory); at most T iterations, stopped at
  the forward pass's `tol` (relative to `max |λ|`), else the sequential loop.

Memory stays that of one iteration, whatever the number of iterations.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from recurrax import _linear_scan
from recurrax.parallel import newton
from recurrax.parallel import problem as P


class Config(NamedTuple):
    """The static choices of one solve."""

    method: str        # one of newton.METHODS, or "sequential"
    tol: float
    max_iters: int
    damping: float
    on_failure: str    # "sequential" or "error"


class Stats(NamedTuple):
    """What the forward pass reports (arrays, so they pass through `jit`)."""

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    parallel: jax.Array


def states(template: P.Problem, config: Config, params: Any, pxs: Any, s0: jax.Array,
           valid: jax.Array, use_parallel: jax.Array) -> tuple[jax.Array, Stats]:
    """`s_{1:T}` `[T, R, N]` and the forward pass's `Stats`; differentiable
    in `params`, `pxs` and `s0` (module docstring). `use_parallel` (a bool
    array) chooses the iterations or the sequential loop at run time."""

    @jax.custom_vjp
    def solve(params, pxs, s0, valid, use_parallel):
        return _forward(template._replace(pxs=pxs, s0=s0, valid=valid), config, params,
                        use_parallel)

    def fwd(params, pxs, s0, valid, use_parallel):
        out = solve(params, pxs, s0, valid, use_parallel)
        return out, (params, pxs, s0, valid, use_parallel, out[0])

    def bwd(residuals, cotangents):
        params, pxs, s0, valid, use_parallel, s = residuals
        problem = template._replace(pxs=pxs, s0=s0, valid=valid)
        s_prev = P.previous(problem, s)
        lam = _adjoints(problem, config, params, s_prev, cotangents[0], use_parallel)

        def steps(params, pxs, s_prev):
            return P.step_all(problem._replace(pxs=pxs), params, s_prev)

        d_params, d_pxs, d_prev = jax.vjp(steps, params, pxs, s_prev)[1](lam)
        return d_params, d_pxs, d_prev[0], None, None

    solve.defvjp(fwd, bwd)
    return solve(params, pxs, s0, valid, use_parallel)


def _forward(problem: P.Problem, config: Config, params: Any,
             use_parallel: jax.Array) -> tuple[jax.Array, Stats]:
    if config.method == "sequential":
        s = P.sequential(problem, params)
        zero = jnp.zeros((), s.dtype)
        return s, Stats(jnp.zeros((), jnp.int32), zero, jnp.ones((), bool), jnp.zeros((), bool))

    def parallel(_):
        out = newton.iterate(problem, params, config.method, config.tol, config.max_iters,
                             config.damping)
        if config.on_failure == "sequential":
            s = jax.lax.cond(out.converged, lambda: out.states,
                             lambda: P.sequential(problem, params))
        else:
            checkify.debug_check(out.converged, "recurrax.parallel: the iterations did not "
                                 "converge within max_iters; the states are NaN")
            s = jnp.where(out.converged, out.states, jnp.nan)
        return s, Stats(out.iterations, out.residual, out.converged, out.converged)

    def sequential(_):
        s = P.sequential(problem, params)
        nan = jnp.full((), jnp.nan, s.dtype)
        return s, Stats(jnp.zeros((), jnp.int32), nan, jnp.zeros((), bool), jnp.zeros((), bool))

    return jax.lax.cond(use_parallel, parallel, sequential, None)


def _adjoints(problem: P.Problem, config: Config, params: Any, s_prev: jax.Array,
              g: jax.Array, use_parallel: jax.Array) -> jax.Array:
    """`λ_{1:T}` of the module docstring."""
    if config.method == "sequential":
        return _sequential_adjoints(problem, params, s_prev, g)
    if not config.method.startswith("quasi"):
        def dense(_):
            _, J = P.jacobians(problem, params, s_prev, diagonal=False)
            A = jnp.concatenate([jnp.swapaxes(J[1:], -1, -2), jnp.zeros_like(J[:1])])
            return _linear_scan.dense(A, g, jnp.zeros_like(g[0]), reverse=True)
        return jax.lax.cond(use_parallel, dense,
                            lambda _: _sequential_adjoints(problem, params, s_prev, g), None)

    def quasi(_):
        _, D = P.jacobians(problem, params, s_prev, diagonal=True)
        D_next = _next(D)
        vjp = jax.vjp(lambda sp: P.step_all(problem, params, sp), s_prev)[1]

        def transposed_next(lam):  # J_{t+1}ᵀ λ_{t+1} at every t
            return _next(vjp(lam)[0])

        def resid(lam, JTl):
            scale = jnp.max(jnp.abs(lam))
            r = jnp.max(jnp.abs(lam - g - JTl)) / jnp.where(scale > 0, scale, 1)
            return jnp.where(jnp.all(jnp.isfinite(lam)), r, jnp.nan)

        def keep_going(state):
            _, _, k, r = state
            return (k < config.max_iters) & (r > config.tol)

        def body(state):
            lam, JTl, k, _ = state
            lam = _linear_scan.diagonal(D_next, g + JTl - D_next * _next(lam),
                                        jnp.zeros_like(g[0]), reverse=True)
            JTl = transposed_next(lam)
            return lam, JTl, k + 1, resid(lam, JTl)

        JTg = transposed_next(g)
        lam, _, _, r = jax.lax.while_loop(
            keep_going, body, (g, JTg, jnp.zeros((), jnp.int32), resid(g, JTg)))
        ok = r <= config.tol
        if config.on_failure == "sequential":
            return jax.lax.cond(ok, lambda: lam,
                                lambda: _sequential_adjoints(problem, params, s_prev, g))
        checkify.debug_check(ok, "recurrax.parallel: the adjoint iterations did not converge "
                                 "within max_iters; the gradients are NaN")
        return jnp.where(ok, lam, jnp.nan)

    return jax.lax.cond(use_parallel, quasi,
                        lambda _: _sequential_adjoints(problem, params, s_prev, g), None)


def _next(a: jax.Array) -> jax.Array:
    """`a_{t+1}` at t (zero at the last step)."""
    return jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])


def _sequential_adjoints(problem: P.Problem, params: Any, s_prev: jax.Array,
                         g: jax.Array) -> jax.Array:
    """The adjoint recurrence run backwards one step at a time (`lax.scan`)."""
    rows = jax.vmap(lambda s, px, v: P.step_row(problem, params, s, px, v))

    def body(lam_next, inputs):  # lam_next = λ_{t+1}; inputs at step t+1 and g_t
        s, px, v, g_t = inputs
        lam = g_t + jax.vjp(lambda s: rows(s, px, v), s)[1](lam_next)[0]
        return lam, lam

    inputs = (_next(s_prev), jax.tree.map(_next, problem.pxs), _next(problem.valid), g)
    return jax.lax.scan(body, jnp.zeros_like(g[0]), inputs, reverse=True)[1]
