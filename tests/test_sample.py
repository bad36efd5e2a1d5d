"""Sampling: greedy equals a step-by-step argmax loop, frequencies follow
softmax(z / τ) over the top k."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax import models
from recurrax.models.sample import next_token, sample


def test_greedy_sampling_is_the_argmax_chain():
    lm = models.language_model("gru", 6, 8)
    params = lm.init(jax.random.key(0))
    carry, tokens = jax.jit(lambda p: sample(lm.step, p, lm.initial_carry((2,)),
                                             jnp.array([1, 4]), jax.random.key(0), 12,
                                             temperature=0.0))(params)
    # the same chain by hand, one recurrax.step per layer per token, in Python
    h = [c.initial_carry((2,)) for c in lm.cells]
    token, want = jnp.array([1, 4]), []
    for _ in range(12):
        x = params["embed"]["E"][token]
        h[0], x = recurrax.step(lm.cells[0], params["layers"][0], h[0], x)
        logits = x @ params["readout"]["W"] + params["readout"]["b"]
        token = jnp.argmax(logits, -1)
        want.append(np.asarray(token))
    np.testing.assert_array_equal(np.asarray(tokens), np.stack(want))
    assert tokens.shape == (12, 2)


def test_frequencies_follow_the_tempered_softmax():
    logits = jnp.array([2.0, 1.0, 0.0, -1.0])
    n = 20000
    keys = jax.random.split(jax.random.key(0), n)
    for temperature in [1.0, 0.5]:
        draws = np.asarray(jax.vmap(lambda k, t=temperature: next_token(k, logits, t))(keys))
        p = np.exp(np.asarray(logits) / temperature)
        p /= p.sum()
        freq = np.bincount(draws, minlength=4) / n
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3)


def test_top_k_never_draws_outside_the_k_largest():
    logits = jnp.array([0.3, 2.0, -1.0, 1.5, 0.0])
    keys = jax.random.split(jax.random.key(1), 5000)
    draws = np.asarray(jax.vmap(lambda k: next_token(k, logits, 2.0, top_k=2))(keys))
    assert set(np.unique(draws)) == {1, 3}
    assert int(next_token(jax.random.key(0), logits, 5.0, top_k=1)) == 1
    with pytest.raises(ValueError, match="top_k must lie in"):
        next_token(jax.random.key(0), logits, 1.0, top_k=9)
