"""`recurrax._deferred`: `scan`'s backward pass with the recurrent weights'
gradients after the loop gives autodiff's gradients (float64 finite
differences, and JAX's own differentiation of the loop), really leaves the
weight gradients out of the backward loop (counted in the compiled program),
and keeps forward mode available on request."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import recurrax
from recurrax import _deferred as deferred
from tests.helpers import build, finite_difference_grad, input_size, loop_matmuls

T, B, H = 5, 3, 4


def _problem(name, dtype=jnp.float32, batch=(B,)):
    D = input_size(name, H, 2)
    cell = build(name, H)
    params = jax.tree.map(lambda a: (a + 0.1).astype(dtype), cell.init(jax.random.key(0), D))
    xs = jax.random.normal(jax.random.key(1), (T, *batch, D), dtype)
    carry0 = jax.tree.map(lambda z: jnp.full(z.shape, 0.3, dtype),
                          cell.initial_carry(batch, dtype))
    weights = jax.random.normal(jax.random.key(2), (T, *batch, H), dtype)
    return cell, params, xs, carry0, weights


def _loss(cell, weights, **kw):
    if "lengths" in kw:
        kw = dict(kw, lengths=jnp.asarray(kw["lengths"]))

    def loss(params, xs, carry0):
        carry, ys = recurrax.scan(cell, params, xs, carry0, **kw)
        return jnp.sum(jnp.sin(ys) * weights) + sum(jnp.sum(jnp.cos(c))
                                                    for c in jax.tree.leaves(carry))
    return loss


#: Every way a cell calls `recurrent`: one tap (rnn, lstm with a gate off,
#: gru reset after), a tap feeding another (gru, mut1, mut2), three (mut3);
#: each with one of two settings of `scan`. tests/test_gradients.py checks
#: every cell against finite differences.
IN_LOOP = dict(hoist=False, lengths=(5, 2, 0), reverse=True)
HOISTED = dict(hoist=True, unroll=2)
CASES = [("rnn", IN_LOOP), ("lstm-o", HOISTED), ("gru", IN_LOOP), ("gru-reset-after", HOISTED),
         ("mut1", HOISTED), ("mut2", IN_LOOP), ("mut3", HOISTED), ("lstm", IN_LOOP)]


@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{','.join(k)}" for n, k in CASES])
def test_equals_autodiff_of_the_loop(name, kw):
    cell, params, xs, carry0, weights = _problem(name)
    loss = _loss(cell, weights, **kw)
    grads = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)
    with deferred.autodiff_in_loop():
        expected = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "gru", "mut3"])
def test_in_loop_prepare_matches_finite_differences(name):
    """`hoist=False` and two batch axes, in float64 (test_gradients.py covers
    the hoisted default at small batches)."""
    with jax.enable_x64(True):
        cell, params, xs, carry0, weights = _problem(name, jnp.float64, batch=(2, 1))
        loss = _loss(cell, weights, hoist=False)
        flat, unravel = ravel_pytree((params, xs, carry0))
        f = lambda v: loss(*unravel(v))
        exact = jax.jit(jax.grad(f))(flat)
        numeric = jax.jit(lambda v: finite_difference_grad(f, v))(flat)
        np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-8)


def _loop_matmuls(fn, *args) -> int:
    """Matmuls inside loops of `fn`'s compiled program (a fresh trace each call)."""
    return loop_matmuls(jax.jit(lambda *a: fn(*a)).lower(*args).compile().as_text())


def test_weight_gradient_leaves_the_backward_loop():
    """lstm, hoisted: the forward loop multiplies by W_h, the backward loop
    by W_hᵀ only; autodiff of the loop adds the in-loop `h_tᵀ da_t`."""
    cell, params, xs, carry0, weights = _problem("lstm")
    grad = jax.grad(_loss(cell, weights, hoist=True), argnums=(0, 1, 2))
    assert _loop_matmuls(grad, params, xs, carry0) == 2
    with deferred.autodiff_in_loop():
        assert _loop_matmuls(grad, params, xs, carry0) == 3


def test_forward_mode_needs_autodiff_in_loop():
    cell, params, xs, carry0, _ = _problem("gru")
    f = lambda xs: recurrax.scan(cell, params, xs, carry0)[1]
    tangent = jnp.ones_like(xs)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(f, (xs,), (tangent,))
    with deferred.autodiff_in_loop():
        _, jvp_out = jax.jvp(f, (xs,), (tangent,))
    with jax.enable_x64(True):  # the tangent against a finite difference
        xs64 = xs.astype(jnp.float64)
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        c64 = jax.tree.map(lambda a: a.astype(jnp.float64), carry0)
        g = lambda x: recurrax.scan(cell, p64, x, c64)[1]
        numeric = (g(xs64 + 1e-6) - g(xs64 - 1e-6)) / 2e-6
    np.testing.assert_allclose(jvp_out, numeric, rtol=1e-4, atol=1e-5)


def test_vmapped_grads_equal_one_at_a_time():
    """Per-member grads of a vmapped scan (a population) equal the members'
    grads computed alone."""
    cell, params, xs, carry0, weights = _problem("mut1")
    scale = jnp.array([0.5, 1.0, 1.5])
    members = jax.tree.map(lambda a: a * scale.reshape((3,) + (1,) * a.ndim), params)
    grad = jax.grad(_loss(cell, weights), argnums=0)
    together = jax.vmap(grad, in_axes=(0, None, None))(members, xs, carry0)
    for k in range(3):
        alone = grad(jax.tree.map(lambda a, k=k: a[k], members), xs, carry0)
        for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[k], b, rtol=1e-5, atol=1e-6)


def test_cell_without_marked_matmuls_runs_the_plain_loop():
    """A cell written by hand (`h @ W` directly) differentiates as before."""
    base = recurrax.cells.rnn(H)

    def step(params, h, px):
        h = jnp.tanh(px + h @ params["W_hh"])
        return h, h

    cell = base._replace(step=step)
    _, params, xs, carry0, weights = _problem("rnn")
    loss = _loss(cell, weights)
    grads = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)
    expected = jax.grad(_loss(base, weights), argnums=(0, 1, 2))(params, xs, carry0)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_transformation_inside_the_step_is_left_alone():
    """A step wrapped in `jax.checkpoint` (a policy that keeps the matmuls)
    traces its matmuls one level down: they are differentiated in the loop,
    and the gradients stay right."""
    cell, params, xs, carry0, weights = _problem("lstm")
    policy = jax.checkpoint_policies.dots_saveable
    wrapped = cell._replace(step=jax.checkpoint(cell.step, policy=policy))
    grads = jax.grad(_loss(wrapped, weights), argnums=(0, 1, 2))(params, xs, carry0)
    expected = jax.grad(_loss(cell, weights), argnums=(0, 1, 2))(params, xs, carry0)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
