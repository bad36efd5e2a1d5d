"""The train step, the learning-rate rule, TBPTT with resets, and resuming
from a checkpoint."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import recurrax
from recurrax import models, train
from recurrax.nn import losses
from recurrax.train import batching, checkpoint


def linear_loss(params, batch, carry, key):
    pred = batch["x"] @ params["w"] + params["b"]
    return jnp.mean((pred - batch["y"]) ** 2), (carry, {})


@pytest.mark.parametrize("clip", [None, 0.1])
def test_sgd_step_with_clipping_matches_numpy(clip, rng):
    x, y = rng.standard_normal((8, 3)), rng.standard_normal(8)
    w, b = rng.standard_normal(3), 0.5
    lr = 0.1
    opt = train.make_optimizer(lr, clip_norm=clip)
    state = train.create_train_state({"w": jnp.asarray(w, jnp.float32), "b": jnp.float32(b)}, opt)
    state, metrics = train.make_train_step(linear_loss, opt)(
        state, {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)})
    r = x @ w + b - y  # gradients of mean((xw + b − y)²), by hand
    g_w, g_b = 2 * x.T @ r / 8, 2 * r.mean()
    norm = np.sqrt(np.sum(g_w ** 2) + g_b ** 2)
    scale = 1.0 if clip is None else min(1.0, clip / norm)
    np.testing.assert_allclose(np.asarray(state.params["w"]), w - lr * scale * g_w, rtol=1e-5)
    np.testing.assert_allclose(float(state.params["b"]), b - lr * scale * g_b, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["grad_norm"]), norm, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss"]), np.mean(r ** 2), rtol=1e-5)
    assert int(state.step) == 1


def test_set_learning_rate_changes_the_step_size(rng):
    opt = train.make_optimizer(1.0, clip_norm=10.0)
    params = {"w": jnp.ones(3), "b": jnp.float32(0.0)}
    state = train.create_train_state(params, opt)
    state = state._replace(opt_state=train.set_learning_rate(state.opt_state, 0.25))
    assert float(train.get_learning_rate(state.opt_state)) == 0.25
    batch = {"x": jnp.eye(3), "y": jnp.zeros(3)}
    new, _ = train.make_train_step(linear_loss, opt)(state, batch)
    full, _ = train.make_train_step(linear_loss, opt)(train.create_train_state(params, opt), batch)
    np.testing.assert_allclose(np.asarray(new.params["w"]) - 1,
                               0.25 * (np.asarray(full.params["w"]) - 1), rtol=1e-6)
    with pytest.raises(ValueError, match="make_optimizer"):
        train.get_learning_rate(optax.sgd(0.1).init(params))


def test_plateau_halves_after_no_improvement():
    state = train.plateau_init()
    scales = []
    for loss in [5.0, 4.0, 4.5, 3.0, 3.0, 3.5, 2.0]:
        state = train.plateau_update(state, loss)
        scales.append(float(state.scale))
    assert scales == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125, 0.125]
    patient = train.plateau_init()
    for loss in [5.0, 6.0, 6.0, 6.0]:
        patient = train.plateau_update(patient, loss, patience=1)
    assert float(patient.scale) == 0.5 and float(patient.best) == 5.0


def test_plateau_runs_under_vmap():
    states = jax.vmap(lambda _: train.plateau_init())(jnp.arange(3))
    states = jax.vmap(train.plateau_update)(states, jnp.array([1.0, 2.0, 3.0]))
    states = jax.vmap(train.plateau_update)(states, jnp.array([0.5, 2.5, 3.0]))
    np.testing.assert_array_equal(np.asarray(states.scale), [1.0, 0.5, 0.5])


def anneal_reference(losses, patience=3, halvings=4):
    """The paper's schedule in plain Python: after `patience` epochs without a
    new best, halve after each epoch, `halvings` times, then stop (scale 0)."""
    best, waited, done, scale, scales = float("inf"), 0, 0, 1.0, []
    for loss in losses:
        waited = 0 if loss < best else waited + 1
        best = min(best, loss)
        if done == halvings:
            scale = 0.0
        elif done > 0 or waited >= patience:
            scale, done = scale / 2, done + 1
        scales.append(scale)
    return scales


@pytest.mark.parametrize("losses", [
    [5.0, 4.0, 4.5, 4.4, 4.3, 4.2, 3.0, 2.0, 1.0, 0.5, 0.4],  # decay starts, improving after
    [5.0, 4.0, 3.0, 2.0, 1.0],                                 # never stalls: no decay
    [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],       # stalls at once
])
def test_anneal_follows_the_papers_schedule(losses):
    state, scales = train.anneal_init(), []
    for loss in losses:
        state = train.anneal_update(state, loss)
        scales.append(float(state.scale))
    assert scales == anneal_reference(losses)
    # the written-out case: no new best after epochs 3, 4, 5 -> halve after 5..8, stop after 9
    if losses[0] == 5.0 and len(losses) == 11:
        assert scales == [1, 1, 1, 1, 0.5, 0.25, 0.125, 0.0625, 0, 0, 0]


def test_anneal_runs_under_vmap_with_its_own_settings():
    losses = np.array([[1.0, 2.0, 2.0, 2.0, 2.0], [3.0, 2.0, 1.0, 0.5, 0.2]], np.float32)
    state = jax.vmap(lambda _: train.anneal_init())(jnp.arange(2))
    update = jax.vmap(lambda s, v: train.anneal_update(s, v, patience=2, halvings=1))
    for t in range(losses.shape[1]):
        state = update(state, jnp.asarray(losses[:, t]))
    expected = [anneal_reference(row, patience=2, halvings=1)[-1] for row in losses.tolist()]
    np.testing.assert_array_equal(np.asarray(state.scale), expected)


def test_windows_with_handed_carry_equal_one_pass_over_the_lanes(rng):
    """TBPTT's forward pass: windows with the carry handed along give exactly
    the logits of one scan over each whole lane."""
    lm = models.language_model("gru", 11, 8)
    params = lm.init(jax.random.key(0))
    tokens = rng.integers(0, 11, 3 * 40 + 1)
    windows = batching.StreamWindows(tokens, None, batch_size=3, steps=10)
    carry, pieces = lm.initial_carry((3,)), []
    for i in range(len(windows)):
        carry, logits = lm.apply(params, jnp.asarray(windows.batch(i)["inputs"]), carry)
        pieces.append(logits)
    _, whole = lm.apply(params, jnp.asarray(tokens[:120].reshape(3, 40).T))
    np.testing.assert_allclose(np.concatenate(pieces), np.asarray(whole), rtol=1e-5, atol=1e-5)


def test_a_reset_starts_a_document_from_zeros(rng):
    lm = models.language_model("lstm", 9, 6, num_layers=2)
    params = lm.init(jax.random.key(0))
    tokens = rng.integers(0, 9, (12, 2))
    resets = np.zeros((12, 2), np.float32)
    resets[5, 0] = 1  # row 0: a new document at step 5
    carry0 = jax.tree.map(lambda c: jnp.asarray(rng.standard_normal(c.shape), jnp.float32),
                          lm.initial_carry((2,)))
    _, logits = lm.apply(params, jnp.asarray(tokens), carry0, resets=jnp.asarray(resets))
    _, plain = lm.apply(params, jnp.asarray(tokens), carry0)
    _, fresh = lm.apply(params, jnp.asarray(tokens[5:, :1]))
    np.testing.assert_allclose(np.asarray(logits[:5]), np.asarray(plain[:5]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(logits[5:, :1]), np.asarray(fresh), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(logits[:, 1]), np.asarray(plain[:, 1]), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(np.asarray(logits[5:, 0]), np.asarray(plain[5:, 0]), atol=1e-3)


def test_gradients_do_not_cross_chunks(rng):
    """The carry handed to the next chunk is a constant for that chunk's gradient."""
    lm = models.language_model("rnn", 5, 4)
    params = lm.init(jax.random.key(0))
    a, b = (jnp.asarray(rng.integers(0, 5, (6, 2))) for _ in range(2))

    def chunk_loss(params, carry, tokens):
        carry, logits = lm.apply(params, tokens, carry)
        return losses.softmax_cross_entropy(logits, tokens), carry

    opt = train.make_optimizer(0.1)
    state = train.create_train_state(params, opt, carry=lm.initial_carry((2,)))
    def loss_fn(p, batch, c, k):
        loss, next_carry = chunk_loss(p, c, batch)
        return loss, (next_carry, {})

    step = train.make_train_step(loss_fn, opt, jit=False)
    state, _ = step(state, a)
    handed = state.carry
    g_step = jax.grad(lambda p: chunk_loss(p, handed, b)[0])(state.params)
    g_const = jax.grad(lambda p: chunk_loss(p, jax.tree.map(np.asarray, handed), b)[0])(
        state.params)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
                 g_step, g_const)


def char_setup(rng, batch_size=4, steps=8):
    tokens = rng.integers(0, 7, 2000)
    starts = np.zeros(2000, bool)
    starts[[0, 700, 1500]] = True
    lm = models.language_model("lstm", 7, 16)
    windows = batching.StreamWindows(tokens, starts, batch_size, steps)

    def loss_fn(params, batch, carry, key):
        carry, logits = lm.apply(params, batch["inputs"], carry, resets=batch["resets"], key=key)
        return losses.softmax_cross_entropy(logits, batch["targets"]), (carry, {})

    opt = train.make_optimizer(0.01, clip_norm=1.0, base=optax.adam)
    fresh = lambda: train.create_train_state(lm.init(jax.random.key(0)), opt,
                                             carry=lm.initial_carry((batch_size,)), seed=3)
    return fresh, train.make_train_step(loss_fn, opt), windows


def test_a_resumed_run_continues_bit_for_bit(rng, tmp_path):
    fresh, step, windows = char_setup(rng)
    state, straight = fresh(), []
    for i in range(10):
        state, m = step(state, windows.batch(i))
        straight.append(float(m["loss"]))

    resumed, losses_ = fresh(), []
    for i in range(4):
        resumed, m = step(resumed, windows.batch(i))
        losses_.append(float(m["loss"]))
    path = tmp_path / "run" / "state.msgpack"
    checkpoint.save(path, resumed, {"history": losses_})
    del resumed
    restored, meta = checkpoint.restore(path, fresh())
    assert int(restored.step) == 4 and meta["history"] == losses_
    for i in range(int(restored.step), 10):
        restored, m = step(restored, windows.batch(i))
        losses_.append(float(m["loss"]))
    assert losses_ == straight  # bit for bit on CPU
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 restored.params, state.params)
    assert os.listdir(path.parent) == ["state.msgpack"]  # no temporary left behind


def test_evaluate_weights_by_valid_positions():
    batches = [{"v": 1.0, "n": 1.0}, {"v": 4.0, "n": 3.0}]
    out = train.evaluate(lambda p, b, c: (c, {"metric": b["v"], "count": b["n"]}), None, batches)
    assert out == {"metric": 13.0 / 4.0, "count": 4.0}


IMPORT_CORE = """
import sys, recurrax
loaded = sorted(m for m in sys.modules if m.startswith("recurrax."))
heavy = ("recurrax.train", "recurrax.models", "recurrax.search", "recurrax.metrics",
         "recurrax.tasks", "recurrax.parallel", "recurrax.kernels", "recurrax.interop",
         "recurrax.nnx", "recurrax.linen")
print([m for m in loaded if m.startswith(heavy)])
import recurrax.train, recurrax.models, recurrax.search, recurrax.metrics, recurrax.tasks
import recurrax.parallel, recurrax.kernels
print(all(hasattr(recurrax.parallel, n) for n in ("scan", "solve", "Info", "METHODS"))
      and hasattr(recurrax.kernels, "scan"))
print(all(hasattr(recurrax.train, n)
          for n in ("TrainState", "population", "batching", "checkpoint")))
print(all(hasattr(recurrax.models, n) for n in ("language_model", "sample", "beam", "captioner")))
"""


def test_import_recurrax_loads_the_core_only():
    """`import recurrax` leaves training, models, the search, metrics and tasks
    unloaded (a fresh process); each loads by name with what it exports."""
    out = subprocess.run([sys.executable, "-c", IMPORT_CORE], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:4] == ["[]", "True", "True", "True"]
    for name in ["Cell", "Seq", "scan", "step", "layer", "stack", "bidirectional", "with_resets",
                 "cells", "nn", "sequence_mask", "reverse_sequence"]:
        assert hasattr(recurrax, name)
