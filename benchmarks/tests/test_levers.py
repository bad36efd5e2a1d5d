"""Every variant `benchmarks.levers` times computes recurrax's lstm: the same
outputs and the same gradients for the params and the inputs. The hand-written
backward pass of `benchmarks.lstm_deferred_grad` is also checked against
central finite differences in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from benchmarks import levers, lstm_deferred_grad, peers

T, B, D, H = 6, 3, 4, 5


def _params_and_xs(dtype=jnp.float32):
    params = recurrax.cells.lstm(H).init(jax.random.key(0), D)
    params = jax.tree.map(lambda a: a + 0.1, params)  # nonzero biases
    xs = jax.random.normal(jax.random.key(1), (T, B, D))
    return jax.tree.map(lambda a: a.astype(dtype), (params, xs))


@pytest.mark.parametrize("name", [n for n in levers.variants(H) if n != "recurrax"])
def test_variant_matches_recurrax(name):
    params, xs = _params_and_xs()
    apply_fns = levers.variants(H)
    weights = jax.random.normal(jax.random.key(2), (T, B, H))  # a loss that weights every y

    def loss(apply):
        return lambda p, x: jnp.sum(jnp.sin(apply(p, x)) * weights)

    ys_ref = apply_fns["recurrax"](params, xs)
    np.testing.assert_allclose(apply_fns[name](params, xs), ys_ref, rtol=1e-5, atol=1e-6)
    g_ref = jax.grad(loss(apply_fns["recurrax"]), argnums=(0, 1))(params, xs)
    g = jax.grad(loss(apply_fns[name]), argnums=(0, 1))(params, xs)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
def test_deferred_grad_matches_finite_differences():
    with jax.enable_x64(True):
        params, xs = _params_and_xs(jnp.float64)
        args = (*lstm_deferred_grad.fused_params(params), xs)
        weights = jax.random.normal(jax.random.key(2), (T, B, H), jnp.float64)
        loss = lambda *a: jnp.sum(jnp.tanh(lstm_deferred_grad.lstm(*a)) * weights)
        grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*args)
        rng = np.random.default_rng(0)
        eps = 1e-6
        for k, g in enumerate(grads):
            direction = jnp.asarray(rng.standard_normal(args[k].shape))
            plus = [a + eps * direction if j == k else a for j, a in enumerate(args)]
            minus = [a - eps * direction if j == k else a for j, a in enumerate(args)]
            fd = (loss(*plus) - loss(*minus)) / (2 * eps)
            np.testing.assert_allclose(jnp.vdot(g, direction), fd, rtol=1e-7, atol=1e-9)


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
def test_levers_thunks_build_for_every_variant():
    """The benchmark's thunk table holds every variant and the PyTorch peer
    (PyTorch optional: skipped without it)."""
    pytest.importorskip("torch")
    thunks = levers.thunks(peers.Shape(2, 3, 4, 5))
    assert set(thunks) == set(levers.variants(5)) | {"torch"}
    for thunk in thunks.values():
        jax.block_until_ready(thunk())
