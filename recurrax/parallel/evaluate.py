r"""`scan` and `solve`: a cell run over a whole sequence at once.

`recurrax.scan` takes T dependent steps. `recurrax.parallel.scan` returns the
same `(carry, ys)`, up to the tolerance, by solving for all T carries together:

- a cell with `cell.linear` (minGRU, minLSTM, the LRU) exactly, by one
  associative scan;
- any other cell by the iterations of `recurrax.parallel.newton` (DEER,
  quasi-DEER, ELK, quasi-ELK), each a linear recurrence solved by an
  associative scan, differentiated implicitly (`recurrax.parallel.implicit`).

The outputs are then one vectorised call of `cell.step` on the carries each
step starts from, `y_t = step(params, carry_{t−1}, px_t)[1]`.

Whether it is faster depends on the machine and the recurrence: the
iterations needed grow with how slowly the recurrence forgets (its largest
Lyapunov exponent), and each costs several sequential passes' work, so the
parallel form wins on a wide machine (a GPU) at long T for a contracting
recurrence, and loses on a CPU or for an expanding one (docs/parallel.md has
the measurements). `method="auto"` decides at run time from the largest
Lyapunov exponent measured along the first `AUTO_STEPS` steps
(`recurrax.metrics.lyapunov`): negative (the recurrence forgets) →
`"quasi-deer"`; otherwise the sequential loop.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recurrax import _checks as checks
from recurrax.parallel import implicit, newton
from recurrax.parallel import problem as P
from recurrax.protocols import Carry, Cell
from recurrax.scan import setup_run

#: `method="auto"` measures the largest Lyapunov exponent over this many steps.
AUTO_STEPS = 64
#: Iterations allowed when `max_iters=None` (at most T for the undamped methods,
#: which never need more: module docstring of `newton`); a recurrence that
#: needs more than this is better run sequentially.
DEFAULT_MAX_ITERS = 100
#: `damping=None` for `"elk"` and `"quasi-elk"`.
DEFAULT_DAMPING = 1.0
ON_FAILURE = ("sequential", "error")


class ParallelError(ArithmeticError):
    """The iterations did not converge and `on_failure="error"`."""


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["iterations", "residual", "converged", "parallel"],
                   meta_fields=["method"])
@dataclasses.dataclass(frozen=True)
class Info:
    """How a `solve` went: arrays, and the method as static data, so it
    passes through `jit` like any pytree.

    Attributes:
      iterations: the iterations run (0 for a linear cell or the sequential loop).
      residual: the scaled residual `max |s_t − F_t(s_{t−1})| / (1 + |F_t(s_{t−1})|)`
        of the last iterate (0 for a linear cell; NaN when no iteration ran).
      converged: the residual is at most `tol` (always True for a linear cell).
      parallel: the answer came from the parallel evaluation (False when the
        sequential loop gave it: `method="sequential"`, `"auto"` choosing it,
        or `on_failure="sequential"` after failing to converge).
      method: the method asked for (`"linear"` for a cell with `cell.linear`).
    """

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    parallel: jax.Array
    method: str


def scan(cell: Cell, params: Any, xs: jax.Array, carry: Carry | None = None, *,
         lengths: jax.Array | None = None, reverse: bool = False, time_major: bool = True,
         method: str = "quasi-deer", tol: float | None = None, max_iters: int | None = None,
         damping: float | None = None, on_failure: str = "sequential") -> tuple[Carry, jax.Array]:
    """`recurrax.scan`'s `(carry, ys)`, evaluated in parallel over time; `solve`
    without the `Info`. The arguments are `solve`'s."""
    carry, ys, _ = solve(cell, params, xs, carry, lengths=lengths, reverse=reverse,
                         time_major=time_major, method=method, tol=tol, max_iters=max_iters,
                         damping=damping, on_failure=on_failure)
    return carry, ys


def solve(cell: Cell, params: Any, xs: jax.Array, carry: Carry | None = None, *,
          lengths: jax.Array | None = None, reverse: bool = False, time_major: bool = True,
          method: str = "quasi-deer", tol: float | None = None, max_iters: int | None = None,
          damping: float | None = None,
          on_failure: str = "sequential") -> tuple[Carry, jax.Array, Info]:
    r"""Run `cell` over `xs` by solving for all carries at once (module docstring).

    Args:
      cell, params, xs, carry, lengths, reverse, time_major: as in `recurrax.scan`,
        with the same meaning and checks.
      method: `"quasi-deer"` (diagonal Jacobians, O(T·N) memory; the default),
        `"deer"` (full Jacobians, O(T·N²) memory and O(T·N³) work: small
        carries), `"quasi-elk"`, `"elk"` (the same, damped: stable where the
        undamped iterates blow up), `"auto"` (quasi-DEER if the largest
        Lyapunov exponent over the first `AUTO_STEPS` steps is negative,
        else sequential) or `"sequential"` (the loop, through the same code;
        for comparisons). Ignored for a cell with `cell.linear`, which is
        always solved exactly.
      tol: convergence threshold on the scaled residual (`Info.residual`);
        default `min(100·ε, 0.01)` for the carry's dtype (ε its machine
        epsilon: 1.2e-5 for float32, 2.2e-14 for float64).
      max_iters: at most this many iterations (an int >= 0), default
        `min(T, DEFAULT_MAX_ITERS)` (`DEFAULT_MAX_ITERS` for the damped methods,
        which T iterations need not bring to the answer).
      damping: λ >= 0 of `"elk"`/`"quasi-elk"` (`recurrax.parallel.kalman`),
        default `DEFAULT_DAMPING`; an error for the other methods.
      on_failure: what happens when the iterations stop unconverged:
        `"sequential"` (the default) returns the sequential loop's answer
        (`Info.parallel` False), so the result is right either way;
        `"error"` raises `ParallelError` when called eagerly, and under
        `jit` returns NaN carries and outputs with a `checkify` check
        (`checkify.checkify(f, errors=checkify.user_checks)` reports it).

    Returns:
      `(carry, ys, info)`: `recurrax.scan`'s final carry and outputs, and `Info`.

    Gradients (`jax.grad`, `jax.vjp`) are by implicit differentiation
    (`recurrax.parallel.implicit`): memory does not grow with the number of
    iterations. Forward mode (`jax.jvp`) is not supported. Under `jax.vmap`
    the fallback and the `"auto"` choice become selects, so both branches run.

    Raises:
      TypeError, ValueError: as `recurrax.scan`, and for a `method`,
        `on_failure`, `tol`, `max_iters` or `damping` of the wrong kind or value.
      ParallelError: `on_failure="error"`, called eagerly, not converged.
    """
    checks.check_cell(cell)
    reverse = checks.check_flag("reverse", reverse)
    time_major = checks.check_flag("time_major", time_major)
    method = checks.check_choice("method", method, (*newton.METHODS, "auto", "sequential"))
    on_failure = checks.check_choice("on_failure", on_failure, ON_FAILURE)
    if tol is not None:
        tol = checks.check_real("tol", tol, minimum=0.0, strict=True)
    if max_iters is not None:
        max_iters = checks.check_size("max_iters", max_iters, minimum=0)
    if damping is not None:
        if not method.endswith("elk"):
            raise ValueError(f"damping: applies to method 'elk' or 'quasi-elk', not {method!r}")
        damping = checks.check_real("damping", damping, minimum=0.0)
    run = setup_run(cell, params, xs, carry, lengths, time_major)
    xs = run.xs if time_major else jnp.moveaxis(run.xs, run.time_axis, 0)
    T = xs.shape[0]
    valid = run.valid
    if reverse:
        xs = jnp.flip(xs, 0)
        valid = None if valid is None else jnp.flip(valid, 0)
    pxs = cell.prepare(params, xs)

    if cell.linear is not None:
        carries = cell.linear(params, pxs, run.carry, valid)
        zero = jnp.zeros((), jax.tree.leaves(run.carry)[0].dtype)
        info = Info(jnp.zeros((), jnp.int32), zero, jnp.ones((), bool), jnp.ones((), bool),
                    "linear")
    else:
        dtype = jnp.result_type(*jax.tree.leaves(run.carry))
        config = implicit.Config(
            method="quasi-deer" if method == "auto" else method,
            tol=min(100 * float(jnp.finfo(dtype).eps), 0.01) if tol is None else tol,
            max_iters=_default_max_iters(method, T) if max_iters is None else max_iters,
            damping=DEFAULT_DAMPING if damping is None else damping,
            on_failure=on_failure)
        use_parallel = _auto(cell, params, xs, run.carry) if method == "auto" else (
            jnp.ones((), bool))
        template = P.make(cell, run.carry, pxs, valid, run.batch_shape)
        states, stats = implicit.states(template, config, params, template.pxs, template.s0,
                                        template.valid, use_parallel)
        carries = template.unravel(states.reshape(T, -1, states.shape[-1]))
        carries = jax.tree.map(lambda c, c0: c.reshape(T, *c0.shape), carries, run.carry)
        info = Info(*stats, method=method)
        if on_failure == "error":
            _raise_if_failed(info)

    ys = _outputs(cell, params, pxs, run.carry, carries, valid)
    if on_failure == "error":  # NaN states made NaN outputs but for the first step's
        ys = jnp.where(info.converged, ys, jnp.nan)
    final = jax.tree.map(lambda c: c[-1], carries) if T else run.carry
    if reverse:
        ys = jnp.flip(ys, 0)
    if not time_major:
        ys = jnp.moveaxis(ys, 0, run.time_axis)
    return final, ys, info


def _default_max_iters(method: str, T: int) -> int:
    """T iterations always suffice for the undamped methods (`newton`), not
    for the damped ones."""
    return DEFAULT_MAX_ITERS if method.endswith("elk") else min(T, DEFAULT_MAX_ITERS)


def _outputs(cell: Cell, params: Any, pxs: Any, carry0: Carry, carries: Carry,
             valid: jax.Array | None) -> jax.Array:
    """`y_t = step(params, carry_{t−1}, px_t)[1]` for every t at once (zero at
    padded steps)."""
    prev = jax.tree.map(lambda c0, c: jnp.concatenate([c0[None].astype(c.dtype), c[:-1]]),
                        carry0, carries)
    ys = jax.vmap(lambda c, px: cell.step(params, c, px)[1])(prev, pxs)
    if valid is not None:
        ys = jnp.where(valid.reshape(*valid.shape, *([1] * (ys.ndim - valid.ndim))), ys, 0)
    return ys


def _auto(cell: Cell, params: Any, xs: jax.Array, carry: Carry) -> jax.Array:
    """`method="auto"`'s rule: parallel iff the largest Lyapunov exponent over
    the first `AUTO_STEPS` steps is negative in every row."""
    from recurrax.metrics.lyapunov import largest_lyapunov_exponent

    exponent = largest_lyapunov_exponent(cell, params, xs[:AUTO_STEPS], carry)
    return jnp.max(exponent) < 0


def _raise_if_failed(info: Info) -> None:
    """`on_failure="error"`, eager: raise where the iterations failed."""
    if checks.is_traced(info.converged) or bool(np.asarray(info.converged)):
        return
    raise ParallelError(
        f"recurrax.parallel.solve: method {info.method!r} did not converge in "
        f"{int(info.iterations)} iterations (scaled residual {float(info.residual):.3g}); "
        f"raise max_iters, use method='elk'/'quasi-elk' (damped) or on_failure='sequential'")
