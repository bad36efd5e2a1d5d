"""Every cell against the NumPy references written from the equations in docs/cells.md."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from tests import reference as ref
from tests.helpers import ALL, Tolerance, as_np, build, input_size, to_jax

TOL = Tolerance(rtol=2e-5, atol=2e-5)  # float32 library against a float64 reference


def test_names_are_the_papers_ten():
    assert recurrax.cells.NAMES == (
        "rnn", "lstm", "lstm-i", "lstm-f", "lstm-o", "lstm-b", "gru", "mut1", "mut2", "mut3"
    )


@pytest.mark.parametrize("name", ALL)
def test_init_gives_the_contract_names_and_shapes(name):
    H = 6
    D = input_size(name, H, 4)
    params = build(name, H).init(jax.random.key(0), D)
    assert {k: v.shape for k, v in params.items()} == ref.param_shapes(name, D, H)
    assert all(v.dtype == jnp.float32 for v in params.values())
    assert build(name, H).hidden_size == H


@pytest.mark.parametrize("name", ALL)
def test_default_initialisers_follow_flax(name):
    """LeCun-normal input kernels, orthogonal recurrent kernels, zero biases
    (b_f = forget_bias)."""
    H, D = 64, 64 if name in ref.NEEDS_D_EQUALS_H else 256
    params = build(name, H).init(jax.random.key(1), D)
    wx, wh, biases = ref.PARAM_NAMES[name]
    for k in wh:
        W = np.asarray(params[k], np.float64)
        np.testing.assert_allclose(W.T @ W, np.eye(H), atol=1e-5)
    for k in wx:  # truncated normal with variance 1/D
        assert abs(np.asarray(params[k]).std() * np.sqrt(D) - 1.0) < 0.05
    for k in biases:
        expected = 1.0 if (name == "lstm-b" and k == "b_f") else 0.0
        np.testing.assert_array_equal(np.asarray(params[k]), expected)
    assert len({np.asarray(params[k]).tobytes() for k in wh}) == len(wh)  # own keys


def test_initialisers_are_overridable():
    ones = jax.nn.initializers.ones
    inits = recurrax.initializers.Initializers(kernel=ones, recurrent=ones, bias=ones)
    params = recurrax.cells.lstm(3, forget_bias=2.0, initializers=inits).init(
        jax.random.key(0), 2)
    np.testing.assert_array_equal(params["W_xi"], np.ones((2, 3)))
    np.testing.assert_array_equal(params["W_hg"], np.ones((3, 3)))
    np.testing.assert_array_equal(params["b_o"], np.ones(3))
    np.testing.assert_array_equal(params["b_f"], np.full(3, 3.0))
    half = recurrax.initializers.Initializers(dtype=jnp.bfloat16)
    params = recurrax.cells.get("mut3", 4, initializers=half).init(jax.random.key(0), 2)
    assert all(v.dtype == jnp.bfloat16 for v in params.values())


@pytest.mark.parametrize("hoist", [True, False])
@pytest.mark.parametrize("name", ALL)
def test_scan_matches_numpy(name, hoist, rng):
    T, B, H = 7, 3, 5
    D = input_size(name, H, 3)
    p = ref.random_params(name, D, H, rng)
    xs = rng.standard_normal((T, B, D))
    carry, ys = recurrax.scan(build(name, H), to_jax(p), jnp.asarray(xs, jnp.float32),
                              hoist=hoist)
    want_carry, want_ys = ref.run(name, p, xs)
    np.testing.assert_allclose(np.asarray(ys), want_ys, **TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), as_np(carry), want_carry)


@pytest.mark.parametrize("name", ALL)
def test_scan_from_a_given_carry_matches_numpy(name, rng):
    T, B, H = 4, 2, 5
    D = input_size(name, H, 3)
    p = ref.random_params(name, D, H, rng)
    xs = rng.standard_normal((T, B, D))
    carry0 = ref.stack_rows([jax.tree.map(lambda z: rng.standard_normal(z.shape),
                                          ref.zero_carry(name, H)) for _ in range(B)])
    carry, ys = recurrax.scan(build(name, H), to_jax(p), jnp.asarray(xs, jnp.float32),
                              jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), carry0))
    want_carry, want_ys = ref.run(name, p, xs, carry0=carry0)
    np.testing.assert_allclose(np.asarray(ys), want_ys, **TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), as_np(carry), want_carry)


@pytest.mark.parametrize("name", ["lstm", "gru", "mut1", "mut3"])
def test_any_number_of_batch_axes(name, rng):
    """[T, 2, 3, D] gives what [T, 6, D] gives; [T, D] (no batch) is one row."""
    T, H = 5, 4
    D = input_size(name, H, 3)
    cell, p = build(name, H), ref.random_params(name, D, H, rng)
    xs = rng.standard_normal((T, 2, 3, D))
    _, ys = recurrax.scan(cell, to_jax(p), jnp.asarray(xs, jnp.float32))
    _, want = ref.run(name, p, xs.reshape(T, 6, D))
    np.testing.assert_allclose(np.asarray(ys).reshape(T, 6, H), want, **TOL)
    _, ys_single = recurrax.scan(cell, to_jax(p), jnp.asarray(xs[:, 0, 0], jnp.float32))
    np.testing.assert_allclose(np.asarray(ys_single), want[:, 0], **TOL)


@pytest.mark.parametrize("name", ALL)
def test_step_is_one_step_of_the_equations(name, rng):
    H = 5
    D = input_size(name, H, 3)
    p = ref.random_params(name, D, H, rng)
    x = rng.standard_normal((2, D))
    carry0 = jax.tree.map(lambda z: rng.standard_normal((2,) + z.shape), ref.zero_carry(name, H))
    carry, y = recurrax.step(build(name, H), to_jax(p),
                             jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), carry0),
                             jnp.asarray(x, jnp.float32))
    for b in range(2):
        want_carry, want_y = ref.STEPS[name](p, ref.row(carry0, b), x[b])
        np.testing.assert_allclose(np.asarray(y)[b], want_y, **TOL)
        jax.tree.map(lambda a, w, b=b: np.testing.assert_allclose(np.asarray(a)[b], w, **TOL),
                     carry, want_carry)


def test_lstm_carry_is_c_then_h(rng):
    """The final carry is `(c, h)` and `h` equals the last output."""
    p = ref.random_params("lstm", 3, 4, rng)
    (c, h), ys = recurrax.scan(recurrax.cells.lstm(4), to_jax(p),
                               jnp.asarray(rng.standard_normal((5, 2, 3)), jnp.float32))
    np.testing.assert_array_equal(np.asarray(h), np.asarray(ys[-1]))
    assert not np.allclose(np.asarray(c), np.asarray(h))


@pytest.mark.parametrize("name", ALL)
def test_initial_carry_is_zeros_of_the_batch_shape(name):
    carry = build(name, 4).initial_carry((2, 3), jnp.float32)
    want = ref.zero_carry(name, 4)
    assert jax.tree.structure(carry) == jax.tree.structure(want)
    for leaf in jax.tree.leaves(carry):
        assert leaf.shape == (2, 3, 4) and not np.any(np.asarray(leaf))
