"""`recurrax.scan` options against the NumPy reference and against each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from tests import reference as ref
from tests.helpers import Tolerance, as_np, build, input_size, to_jax

TOL = Tolerance(rtol=2e-5, atol=2e-5)
NAMES = ["rnn", "lstm", "lstm-f", "gru", "gru-reset-after", "mut1", "mut2", "mut3"]


def setup(name, rng, T=6, B=4, H=5):
    D = input_size(name, H, 3)
    p = ref.random_params(name, D, H, rng)
    xs = rng.standard_normal((T, B, D))
    return build(name, H), p, xs


def assert_tree_close(got, want, rtol: float = TOL["rtol"], atol: float = TOL["atol"]):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol),
                 as_np(got), as_np(want))


@pytest.mark.parametrize("hoist", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_lengths_and_reverse_match_numpy(name, reverse, hoist, rng):
    """Lengths 0 and T included; padded steps give 0 and keep the carry; with
    reverse each row starts at its own last valid step."""
    cell, p, xs = setup(name, rng)
    lengths = np.array([0, 6, 3, 1])
    carry, ys = recurrax.scan(cell, to_jax(p), jnp.asarray(xs, jnp.float32),
                              lengths=jnp.asarray(lengths), reverse=reverse, hoist=hoist)
    want_carry, want_ys = ref.run(name, p, xs, lengths=lengths, reverse=reverse)
    np.testing.assert_allclose(np.asarray(ys), want_ys, **TOL)
    assert_tree_close(carry, want_carry)
    assert not np.any(np.asarray(ys)[:, 0])  # a row of length 0 outputs nothing
    assert_tree_close(jax.tree.map(lambda c: c[0], carry), ref.zero_carry(name, 5))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_reverse_without_lengths_matches_numpy(name, rng):
    cell, p, xs = setup(name, rng)
    carry, ys = recurrax.scan(cell, to_jax(p), jnp.asarray(xs, jnp.float32), reverse=True)
    want_carry, want_ys = ref.run(name, p, xs, reverse=True)
    np.testing.assert_allclose(np.asarray(ys), want_ys, **TOL)
    assert_tree_close(carry, want_carry)


@pytest.mark.parametrize("hoist", [True, False])
@pytest.mark.parametrize("name", ["lstm", "mut2"])
def test_batch_major_layout(name, hoist, rng):
    cell, p, xs = setup(name, rng)
    lengths = np.array([2, 6, 0, 5])
    xs_bm = jnp.asarray(np.swapaxes(xs, 0, 1), jnp.float32)  # [B, T, D]
    carry, ys = recurrax.scan(cell, to_jax(p), xs_bm, lengths=jnp.asarray(lengths),
                              time_major=False, hoist=hoist)
    want_carry, want_ys = ref.run(name, p, xs, lengths=lengths)
    assert ys.shape == (4, 6, 5)
    np.testing.assert_allclose(np.asarray(ys), np.swapaxes(want_ys, 0, 1), **TOL)
    assert_tree_close(carry, want_carry)


def loss_and_grads(cell, params, xs, **kw):
    def loss(params, xs):
        carry, ys = recurrax.scan(cell, params, xs, **kw)
        return jnp.sum(ys ** 2) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(carry))

    return jax.value_and_grad(loss, argnums=(0, 1))(params, xs)


@pytest.mark.parametrize("variant", [dict(unroll=3), dict(unroll=True), dict(remat=True),
                                     dict(hoist=False), dict(unroll=2, remat=True, hoist=True)])
@pytest.mark.parametrize("name", ["lstm", "gru", "mut3"])
def test_unroll_remat_hoist_give_the_same_values_and_gradients(name, variant, rng):
    cell, p, xs = setup(name, rng, T=7)
    params, xs = to_jax(p), jnp.asarray(xs, jnp.float32)
    lengths = jnp.array([7, 3, 0, 5])
    base = loss_and_grads(cell, params, xs, lengths=lengths, hoist=True)
    other = loss_and_grads(cell, params, xs, lengths=lengths, **variant)
    assert_tree_close(other, base, rtol=1e-5, atol=1e-5)


def test_jit_matches_eager(rng):
    cell, p, xs = setup("lstm", rng)
    params, xs = to_jax(p), jnp.asarray(xs, jnp.float32)
    lengths = jnp.array([1, 6, 2, 4])
    eager = recurrax.scan(cell, params, xs, lengths=lengths, reverse=True)
    jitted = jax.jit(lambda p, x, n: recurrax.scan(cell, p, x, lengths=n, reverse=True))(
        params, xs, lengths)
    assert_tree_close(jitted, eager, rtol=1e-6, atol=1e-6)


def test_vmap_over_a_population_of_params(rng):
    """vmap over 3 independently drawn param sets equals 3 separate runs."""
    cell = recurrax.cells.gru(5)
    population = [ref.random_params("gru", 3, 5, rng) for _ in range(3)]
    stacked = {k: jnp.asarray(np.stack([p[k] for p in population]), jnp.float32)
               for k in population[0]}
    xs = rng.standard_normal((6, 4, 3))
    lengths = np.array([6, 2, 0, 4])
    carry, ys = jax.jit(jax.vmap(
        lambda p: recurrax.scan(cell, p, jnp.asarray(xs, jnp.float32),
                                lengths=jnp.asarray(lengths))))(stacked)
    for m, p in enumerate(population):
        want_carry, want_ys = ref.run("gru", p, xs, lengths=lengths)
        np.testing.assert_allclose(np.asarray(ys[m]), want_ys, **TOL)
        np.testing.assert_allclose(np.asarray(carry[m]), want_carry, **TOL)


def test_vmap_over_the_batch_equals_batched_scan(rng):
    cell, p, xs = setup("mut3", rng)
    params, xs = to_jax(p), jnp.asarray(xs, jnp.float32)
    _, batched = recurrax.scan(cell, params, xs)
    _, mapped = jax.vmap(lambda x: recurrax.scan(cell, params, x), in_axes=1, out_axes=1)(xs)
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(batched), rtol=1e-6, atol=1e-6)


def test_lengths_under_jit_are_traced(rng):
    cell, p, xs = setup("rnn", rng)
    fn = jax.jit(lambda n: recurrax.scan(cell, to_jax(p), jnp.asarray(xs, jnp.float32),
                                         lengths=n)[1])
    lengths = np.array([3, 0, 6, 2])
    np.testing.assert_allclose(np.asarray(fn(jnp.asarray(lengths))),
                               ref.run("rnn", p, xs, lengths=lengths)[1], **TOL)


def test_default_hoist_rule():
    assert recurrax.default_hoist(1, "cpu") is True
    assert recurrax.default_hoist(64, "cpu") is False
    assert recurrax.default_hoist(64, "gpu") is True  # hoisting never lost on the GPU
    assert recurrax.default_hoist(64) is (jax.default_backend() != "cpu")


def test_the_checks_leave_nothing_in_the_callers_program():
    """`scan`'s argument checks trace the cell abstractly: no op of theirs (the
    key `check_params` draws, say) is staged into a program that calls scan."""
    cell = recurrax.cells.gru(4)
    params = cell.init(jax.random.key(0), 3)
    jaxpr = jax.make_jaxpr(lambda p, x: recurrax.scan(cell, p, x)[1])(params, jnp.ones((2, 1, 3)))
    assert "random" not in str(jaxpr)
