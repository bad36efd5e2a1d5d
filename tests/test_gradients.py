"""`jax.grad` through `scan` against central finite differences, in float64.

x64 is switched on inside each test only (`jax.enable_x64`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import recurrax
from tests import reference as ref
from tests.helpers import ALL, build, finite_difference_grad, input_size

T, B, H = 4, 2, 3




@pytest.mark.parametrize("options", [dict(), dict(reverse=True),
                                     dict(lengths=(4, 2)), dict(lengths=(0, 3), reverse=True)])
@pytest.mark.parametrize("name", ALL)
def test_grad_matches_finite_differences(name, options, rng):
    D = input_size(name, H, 2)
    with jax.enable_x64(True):
        cell = build(name, H)
        p = {k: jnp.asarray(v) for k, v in ref.random_params(name, D, H, rng).items()}
        xs = jnp.asarray(rng.standard_normal((T, B, D)))
        carry0 = jax.tree.map(lambda z: jnp.asarray(rng.standard_normal((B,) + z.shape)),
                              ref.zero_carry(name, H))
        w_ys = jnp.asarray(rng.standard_normal((T, B, H)))
        kw = dict(options)
        if "lengths" in kw:
            kw["lengths"] = jnp.asarray(kw["lengths"])
        flat, unravel = ravel_pytree((p, xs, carry0))
        assert flat.dtype == jnp.float64

        def loss(flat):
            params, xs, carry0 = unravel(flat)
            carry, ys = recurrax.scan(cell, params, xs, carry0, **kw)
            return jnp.sum(w_ys * ys) + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(carry))

        exact = jax.jit(jax.grad(loss))(flat)
        numeric = jax.jit(lambda v: finite_difference_grad(loss, v))(flat)
        np.testing.assert_allclose(np.asarray(exact), np.asarray(numeric), rtol=1e-6, atol=1e-8)
        assert np.abs(np.asarray(exact)).max() > 1e-3  # the check is not vacuous
