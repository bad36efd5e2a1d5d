r"""How gradients flow back through time: `gradient_flow(cell, params, xs)`.

Write `s_t` for the carry after t steps (`s_0` the initial carry, `s_T` the
final one) and `h_t` for its hidden part: the carry itself, or `h` of the
LSTM's `(c, h)` (in general the last leaf of the carry). One step is
`s_{t+1} = F(s_t, x_t)` and its recurrent Jacobian is

    J_t = ∂s_{t+1}/∂s_t                           (K × K, K the carry's width)

For the vanilla RNN, `h' = tanh(x W_xh + h W_hh + b_h)` in the row-vector
convention, `J_t = diag(1 − h_{t+1}²) W_hhᵀ`. By the chain rule

    ∂s_T/∂s_t = J_{T−1} J_{T−2} ⋯ J_t,    so    ‖∂s_T/∂s_t‖₂ ≤ Π_{k=t}^{T−1} ‖J_k‖₂,

which decays geometrically in the distance T − t when every `‖J_k‖₂ < 1`
(vanishing gradients) and can grow geometrically when they exceed 1
(exploding ones; Bengio et al. 1994, Pascanu et al. 2013). For a loss
`L(y_1..y_T, s_T)` with `y_t = h_t` (`ys[t − 1]` in the array `scan`
returns) backpropagation through time gives

    ∂L/∂h_t = ∂L/∂y_t + [J_tᵀ ∂L/∂s_{t+1}]_h,

the part that arrives from the future being the same product of Jacobians.

Everything is computed in one compiled pass, not T. The sequence is run
with a zero "probe" δ_t added to every carry, `s_t ← s_t + δ_t` (and the same
δ to that step's output, since `y_t = h_t`); then `∂s_T/∂s_t = ∂s_T/∂δ_t`
and `∂L/∂h_t = ∂L/∂δ_t`. One forward pass and one `jax.vjp` give the
cotangents of every δ_t at once; the K rows of `∂s_T/∂s_t` are the VJPs of
the K unit vectors, vectorised with `jax.vmap` (K + 1 backward scans run as
one batched scan). The per-step Jacobians `J_t` come from `jax.jacfwd` of
`cell.step` vmapped over the trajectory, and their largest singular value
from `jnp.linalg.svd`, one Jacobian at a time (`lax.map`: a batched LAPACK
call can deadlock XLA CPU on jaxlib 0.10.0–0.10.2, see `recurrax.train.population`).
All of it is exact (no estimator), and compiled once per cell, `loss_fn` and
shapes: both are static, so pass the same function object, not a fresh
`lambda` per call, to reuse the compiled program.
Every row runs all T steps (there is no `lengths`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax import _checks as checks
from recurrax._flat import ravel, unraveler
from recurrax.protocols import Carry, Cell
from recurrax.scan import start_carry

LossFn = Callable[[jax.Array, Carry], jax.Array]


class GradientFlow(NamedTuple):
    r"""What `gradient_flow` measures. Index t = 0 … T counts steps taken, so
    `t = T` is the final carry and `T − t` is the distance back in time;
    `[::-1]` orders by distance. Every norm is per batch row (rows never
    interact in a cell); average over rows yourself.

    Attributes:
      jacobian_norm: `[T+1, *batch]`, the Frobenius norm `‖∂h_T/∂h_t‖_F`
        (`√H` at t = T, where the Jacobian is the identity).
      state_jacobian_norm: `[T+1, *batch]`, `‖∂s_T/∂s_t‖_F` over the whole
        carry; for the LSTM, `s = (c, h)` so this includes the cell path
        `c_t → c_T`. Equal to `jacobian_norm` for cells whose carry is `h`.
      loss_grad_norm: `[T+1, *batch]`, `‖∂L/∂h_t‖₂` (the total derivative:
        through `y_t = h_t` and through the later steps); `None` without
        `loss_fn`.
      spectral_norm: `[T, *batch]`, `‖J_t‖₂ = σ_max(∂s_{t+1}/∂s_t)` along
        the trajectory, t = 0 … T−1, over the whole carry; `None` with
        `spectral=False`.
      loss: the value of `loss_fn`, or `None`.
    """

    jacobian_norm: jax.Array
    state_jacobian_norm: jax.Array
    loss_grad_norm: jax.Array | None
    spectral_norm: jax.Array | None
    loss: jax.Array | None


def gradient_flow(cell: Cell, params: Any, xs: jax.Array, carry: Carry | None = None, *,
                  loss_fn: LossFn | None = None, spectral: bool = True) -> GradientFlow:
    r"""Measure how gradients propagate back through time (module docstring).

    Args:
      cell: a `recurrax.Cell` whose output is its hidden state, `y = h` (every
        built-in cell) and whose carry leaves are `[*batch, width]`.
      params: the cell's params.
      xs: `[T, *batch, D]`, time-major; at least one step.
      carry: the initial carry `s_0`; `None` starts from `cell.initial_carry`.
      loss_fn: `(ys [T, *batch, H], final_carry) -> scalar`, the loss whose
        gradients `∂L/∂h_t` are reported; `None` skips them.
      spectral: compute `spectral_norm` (`None` when False). It is T·batch
        SVDs of K × K matrices, LAPACK on CPU: the costly part for large K.

    Returns:
      A `GradientFlow` of per-row norms. Cost: one forward scan, K + 1 backward
      scans vectorised into one (K = the carry's width, 2H for the LSTM), and
      T·batch Jacobians of one step with their SVDs.
    """
    checks.check_cell(cell)
    checks.check_array("xs", xs, 2, "[T, *batch, D]")
    xs = jnp.asarray(xs)
    if xs.shape[0] < 1:
        raise ValueError(f"xs: needs at least one time step, got shape {xs.shape} "
                         f"(layout [T, *batch, D])")
    checks.check_params(cell, params, xs.shape[-1],
                        f"xs (layout [T, *batch, D], shape {xs.shape})")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (ys, final_carry) -> scalar, "
                        f"got {type(loss_fn).__name__}")
    batch_shape = tuple(xs.shape[1:-1])
    carry = start_carry(cell, params, xs, carry, batch_shape)
    for i, leaf in enumerate(jax.tree.leaves(carry)):
        if jnp.ndim(leaf) != len(batch_shape) + 1:
            raise ValueError(f"carry: gradient_flow needs every carry leaf of shape "
                             f"[*batch, width] = [{', '.join(map(str, batch_shape))}, width]; "
                             f"leaf {i} has shape {jnp.shape(leaf)}")
    return _flow(cell, loss_fn, params, xs, carry, bool(spectral))


def _norm(x: jax.Array, axis: tuple) -> jax.Array:
    """The 2-norm over `axis`, scaled by the largest entry first so that
    squares of 1e-30 (a vanished gradient) do not underflow in float32."""
    m = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    safe = jnp.where(m > 0, m, 1)
    return jnp.squeeze(m, axis) * jnp.sqrt(jnp.sum((x / safe) ** 2, axis=axis))


@functools.partial(jax.jit, static_argnums=(0, 1, 5))
def _flow(cell: Cell, loss_fn: LossFn | None, params, xs, carry0, spectral: bool) -> GradientFlow:
    T, batch_shape = xs.shape[0], xs.shape[1:-1]
    unravel = unraveler(carry0)
    s0 = ravel(carry0)
    K, H = s0.shape[-1], jax.tree.leaves(carry0)[-1].shape[-1]
    hid = slice(K - H, K)  # the hidden part h of a flat carry
    pxs = cell.prepare(params, xs)

    def run(probes):  # probes: [T+1, *batch, K], all zero; s_t ← s_t + δ_t
        def body(s, inputs):
            px, delta = inputs
            new, y = cell.step(params, unravel(s), px)
            if jnp.shape(y) != (*batch_shape, H):
                raise ValueError(f"cell: gradient_flow needs y = h (outputs of shape "
                                 f"{(*batch_shape, H)}), got outputs of shape {jnp.shape(y)}")
            return ravel(new) + delta, (y + delta[..., hid], s)

        sT, (ys, states) = jax.lax.scan(body, s0 + probes[0], (pxs, probes[1:]))
        loss = jnp.zeros((), s0.dtype) if loss_fn is None else loss_fn(ys, unravel(sT))
        if jnp.shape(loss) != ():
            raise ValueError(f"loss_fn: must return a scalar, got shape {jnp.shape(loss)}")
        return (sT, loss), states

    probes = jnp.zeros((T + 1, *batch_shape, K), s0.dtype)
    (_, loss), vjp_fn, states = jax.vjp(run, probes, has_aux=True)
    # Cotangents: the K unit vectors on s_T (every row at once), then 1 on L.
    eye = jnp.eye(K, dtype=s0.dtype).reshape(K, *([1] * len(batch_shape)), K)
    ct_s = jnp.concatenate([jnp.broadcast_to(eye, (K, *batch_shape, K)),
                            jnp.zeros((1, *batch_shape, K), s0.dtype)])
    ct_loss = jnp.zeros(K + 1, loss.dtype).at[K].set(1)
    (grads,) = jax.vmap(vjp_fn)((ct_s, ct_loss))  # [K+1, T+1, *batch, K]
    jac = grads[:K]  # jac[i, t, ..., j] = ∂s_T[i] / ∂s_t[j]
    jacobian_norm = _norm(jac[hid][..., hid], axis=(0, -1))
    state_jacobian_norm = _norm(jac, axis=(0, -1))
    loss_grad_norm = None if loss_fn is None else _norm(grads[K][..., hid], axis=(-1,))
    sigma = _spectral_norms(cell, params, unravel, states, pxs) if spectral else None
    return GradientFlow(jacobian_norm, state_jacobian_norm, loss_grad_norm, sigma,
                        None if loss_fn is None else loss)


def _spectral_norms(cell, params, unravel, states, pxs) -> jax.Array:
    """`σ_max(J_t)`, `J_t = ∂s_{t+1}/∂s_t` at every `(t, row)` of the trajectory
    `states [T, *batch, K]`: `jacfwd` of one step of one row, vmapped; the SVDs
    unbatched (module docstring)."""
    def one_step(s, px):  # s [K] -> s' [K]
        return ravel(cell.step(params, unravel(s), px)[0])

    K = states.shape[-1]
    J = jax.vmap(jax.jacfwd(one_step))(states.reshape(-1, K), pxs.reshape(-1, pxs.shape[-1]))
    sigma_max = jax.lax.map(lambda j: jnp.linalg.svd(j, compute_uv=False)[0], J)
    return sigma_max.reshape(states.shape[:-1])
