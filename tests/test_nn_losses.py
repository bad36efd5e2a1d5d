"""`recurrax.nn` and `recurrax.nn.losses` against NumPy written from the formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recurrax import nn
from recurrax.nn import losses


def test_embedding_is_a_dense_layer_on_one_hot_inputs(rng):
    layer = nn.embedding(5)
    params = layer.init(jax.random.key(0), 7)
    assert params["E"].shape == (7, 5)
    ids = rng.integers(0, 7, (3, 4))
    one_hot = np.eye(7)[ids]
    np.testing.assert_allclose(np.asarray(layer.apply(params, jnp.asarray(ids))),
                               one_hot @ np.asarray(params["E"]), rtol=1e-6)
    with pytest.raises(ValueError, match="ids must be integers"):
        layer.apply(params, jnp.zeros(3))


def test_dense(rng):
    layer = nn.dense(4)
    params = layer.init(jax.random.key(0), 3)
    params = {k: jnp.asarray(rng.standard_normal(v.shape), jnp.float32) for k, v in params.items()}
    x = rng.standard_normal((2, 5, 3))
    want = x @ np.asarray(params["W"]) + np.asarray(params["b"])
    np.testing.assert_allclose(np.asarray(layer.apply(params, jnp.asarray(x, jnp.float32))), want,
                               rtol=1e-5, atol=1e-5)
    assert "b" not in nn.dense(4, use_bias=False).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="must have 3 features"):
        layer.apply(params, jnp.zeros((2, 4)))


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("with_mask", [False, True])
def test_softmax_cross_entropy_and_accuracy(with_mask, rng):
    logits = rng.standard_normal((6, 3, 5)) * 3
    targets = rng.integers(0, 5, (6, 3))
    mask = rng.random((6, 3)) < 0.6 if with_mask else np.ones((6, 3), bool)
    nll = -np.take_along_axis(log_softmax(logits), targets[..., None], -1)[..., 0]
    want = nll[mask].mean()
    got = losses.softmax_cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(targets),
                                       jnp.asarray(mask) if with_mask else None)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    hits = (logits.argmax(-1) == targets)[mask].mean()
    acc = losses.accuracy(jnp.asarray(logits), jnp.asarray(targets),
                          jnp.asarray(mask) if with_mask else None)
    np.testing.assert_allclose(float(acc), hits, rtol=1e-6)


def test_an_all_padding_batch_gives_zero_not_nan():
    loss = losses.softmax_cross_entropy(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32),
                                        jnp.zeros((2, 3), bool))
    assert float(loss) == 0.0


def test_bernoulli_nll(rng):
    logits = rng.standard_normal((5, 2, 8)) * 4
    targets = (rng.random((5, 2, 8)) < 0.3).astype(np.float32)
    mask = np.array([[1, 1], [1, 0], [1, 1], [0, 0], [1, 1]], bool)
    p = 1 / (1 + np.exp(-logits))
    per_step = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).sum(-1)
    got = losses.bernoulli_nll(jnp.asarray(logits, jnp.float32), jnp.asarray(targets),
                               jnp.asarray(mask))
    np.testing.assert_allclose(float(got), per_step[mask].mean(), rtol=1e-5)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"targets: got shape \(2, 4\), needs .* \(2, 3\)"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3, 5)), jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"mask: got shape \(3,\)"):
        losses.accuracy(jnp.zeros((2, 3, 5)), jnp.zeros((2, 3), jnp.int32), jnp.ones(3, bool))


def test_bits_and_perplexity():
    assert losses.bits_per_character(math.log(2)) == pytest.approx(1.0)
    assert losses.bits_per_character(math.log(4)) == pytest.approx(2.0)
    assert losses.perplexity(math.log(50.0)) == pytest.approx(50.0)
    assert float(losses.perplexity(jnp.asarray(math.log(10.0)))) == pytest.approx(10.0, rel=1e-6)
