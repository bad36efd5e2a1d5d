"""Bad and edge inputs to `recurrax.nn` (losses, embedding, dense, conv2d,
dropout) and `recurrax.train.batching` (issue 16): a clear error outside
`jit`, a documented result inside it, never a silent NaN or wrong value."""

import math
from collections import namedtuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from recurrax import nn
from recurrax.nn import losses
from recurrax.train.batching import ExampleBatches, StreamWindows


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.fixture
def data(rng):
    logits = rng.standard_normal((4, 3, 5)).astype(np.float32)
    targets = rng.integers(0, 5, (4, 3)).astype(np.int32)
    return logits, targets


# --- out-of-range targets: outside jit ---------------------------------------------------

@pytest.mark.parametrize("fn", [losses.softmax_cross_entropy, losses.accuracy])
@pytest.mark.parametrize("bad", [5, 17, -1])
def test_an_out_of_range_target_is_a_value_error_naming_it(fn, bad, data):
    logits, targets = data
    targets[2, 1] = bad
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"{name}: targets must lie in \[0, 5\) \(the 5 "
                                         rf"classes of the logits' last axis\); 1 out of range "
                                         rf"\(from {bad} to {bad}\), the first "
                                         rf"targets\[2, 1\] = {bad}"):
        fn(jnp.asarray(logits), jnp.asarray(targets))
    with pytest.raises(ValueError, match="out of range"):  # NumPy arrays too
        fn(logits, targets)


@pytest.mark.parametrize("fn", [losses.softmax_cross_entropy, losses.accuracy])
def test_float_or_bool_targets_are_refused(fn, data):
    logits, targets = data
    with pytest.raises(ValueError, match="targets must be integers .*got dtype float32"):
        fn(jnp.asarray(logits), jnp.asarray(targets, jnp.float32))
    with pytest.raises(ValueError, match="targets must be integers .*got dtype bool"):
        fn(jnp.asarray(logits), jnp.asarray(targets) > 2)
    with pytest.raises(TypeError, match="targets must be an array, got list"):
        fn(jnp.asarray(logits), targets.tolist())


def test_padding_may_hold_any_id(data):
    """Positions the mask drops are never read: -1 or 99 there change nothing."""
    logits, targets = data
    mask = np.ones((4, 3), bool)
    mask[1:, 2] = False
    padded = targets.copy()
    padded[1:, 2] = [-1, 99, 5]
    nll = -np.take_along_axis(log_softmax(logits.astype(np.float64)), targets[..., None],
                              -1)[..., 0]
    for f in (lambda t, m: losses.softmax_cross_entropy(jnp.asarray(logits), t, m),
              jax.jit(lambda t, m: losses.softmax_cross_entropy(jnp.asarray(logits), t, m))):
        got = f(jnp.asarray(padded), jnp.asarray(mask))
        np.testing.assert_allclose(float(got), nll[mask].mean(), rtol=1e-5)
    acc = losses.accuracy(jnp.asarray(logits), jnp.asarray(padded), jnp.asarray(mask))
    np.testing.assert_allclose(float(acc), (logits.argmax(-1) == targets)[mask].mean(), rtol=1e-6)


# --- out-of-range targets: inside jit ------------------------------------------------------

def test_under_jit_fill_mode_gives_nan_and_checkify_names_the_id(data):
    logits, targets = data
    targets[0, 0] = 7
    f = jax.jit(losses.softmax_cross_entropy)
    assert math.isnan(float(f(jnp.asarray(logits), jnp.asarray(targets))))
    err, out = checkify.checkify(f, errors=checkify.user_checks)(jnp.asarray(logits),
                                                                 jnp.asarray(targets))
    assert math.isnan(float(out))
    with pytest.raises(checkify.JaxRuntimeError,
                       match=r"softmax_cross_entropy: targets must lie in \[0, 5\).*got 1 out "
                             r"of range, e\.g\. 7"):
        err.throw()
    acc = jax.jit(losses.accuracy)(jnp.asarray(logits), jnp.asarray(targets))
    assert math.isnan(float(acc))


def test_under_jit_a_negative_id_is_never_wrapped_around(data):
    logits, targets = data
    targets[3, 2] = -1
    out = jax.jit(losses.softmax_cross_entropy)(jnp.asarray(logits), jnp.asarray(targets))
    assert math.isnan(float(out))


def test_under_jit_good_targets_pass_the_check_and_match_numpy(data):
    logits, targets = data
    f = checkify.checkify(jax.jit(losses.softmax_cross_entropy), errors=checkify.user_checks)
    err, out = f(jnp.asarray(logits), jnp.asarray(targets))
    assert err.get() is None
    nll = -np.take_along_axis(log_softmax(logits.astype(np.float64)), targets[..., None],
                              -1)[..., 0]
    np.testing.assert_allclose(float(out), nll.mean(), rtol=1e-5)


def test_clip_mode_clamps_ids_without_a_check(data):
    logits, targets = data
    bad = targets.copy()
    bad[0, 0], bad[1, 1] = 9, -3
    clamped = np.clip(bad, 0, 4)
    nll = -np.take_along_axis(log_softmax(logits.astype(np.float64)), clamped[..., None],
                              -1)[..., 0]
    for f in (losses.softmax_cross_entropy, jax.jit(losses.softmax_cross_entropy,
                                                    static_argnames="mode")):
        got = f(jnp.asarray(logits), jnp.asarray(bad), mode="clip")
        np.testing.assert_allclose(float(got), nll.mean(), rtol=1e-5)
    acc = losses.accuracy(jnp.asarray(logits), jnp.asarray(bad), mode="clip")
    np.testing.assert_allclose(float(acc), (logits.argmax(-1) == clamped).mean(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"mode must be one of \('fill', 'clip'\), got 'wrap'"):
        losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), mode="wrap")


# --- other loss inputs ----------------------------------------------------------------------

def test_loss_shapes_and_masks(data):
    logits, targets = data
    with pytest.raises(ValueError, match=r"targets: got shape \(4,\), needs the logits' shape "
                                         r"without the class axis, \(4, 3\)"):
        losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(targets[:, 0]))
    with pytest.raises(ValueError, match=r"mask: got shape \(3, 4\), needs the targets' shape"):
        losses.accuracy(jnp.asarray(logits), jnp.asarray(targets), jnp.ones((3, 4), bool))
    with pytest.raises(ValueError, match="logits: needs a class axis last of at least 1 class"):
        losses.softmax_cross_entropy(jnp.zeros((4, 0)), jnp.zeros(4, jnp.int32))
    with pytest.raises(TypeError, match="logits must be an array, got list"):
        losses.softmax_cross_entropy([[0.0, 1.0]], jnp.zeros(1, jnp.int32))  # type: ignore[arg-type]


def test_an_empty_batch_gives_zero_as_an_all_padding_one_does():
    empty = losses.softmax_cross_entropy(jnp.zeros((0, 3, 5)), jnp.zeros((0, 3), jnp.int32))
    assert float(empty) == 0.0
    assert float(losses.accuracy(jnp.zeros((0, 5)), jnp.zeros((0,), jnp.int32))) == 0.0


def test_bernoulli_targets_must_lie_in_0_1(rng):
    z = jnp.asarray(rng.standard_normal((3, 2, 4)), jnp.float32)
    y = (rng.random((3, 2, 4)) < 0.5).astype(np.float32)
    losses.bernoulli_nll(z, jnp.asarray(y))
    y[1, 0, 3] = 2.0
    with pytest.raises(ValueError, match=r"bernoulli_nll: targets must lie in \[0, 1\].*got "
                                         r"2\.0 at targets\[1, 0, 3\]"):
        losses.bernoulli_nll(z, jnp.asarray(y))
    mask = np.ones((3, 2), bool)
    mask[1, 0] = False  # padding is never read
    losses.bernoulli_nll(z, jnp.asarray(y), jnp.asarray(mask))
    y[1, 0, 3] = np.nan
    with pytest.raises(ValueError, match="got nan"):
        losses.bernoulli_nll(z, jnp.asarray(y))
    err, _ = checkify.checkify(jax.jit(losses.bernoulli_nll), errors=checkify.user_checks)(
        z, jnp.asarray(y))
    with pytest.raises(checkify.JaxRuntimeError, match=r"targets must lie in \[0, 1\]"):
        err.throw()


def test_perplexity_of_a_diverged_loss_is_inf_not_an_error():
    assert losses.perplexity(1000.0) == math.inf
    assert losses.perplexity(math.log(7.0)) == pytest.approx(7.0)
    np.testing.assert_allclose(losses.perplexity(np.array([0.0, math.log(3.0), 1e4])),  # type: ignore[arg-type]
                               [1.0, 3.0, np.inf])


# --- embedding ------------------------------------------------------------------------------

def test_embedding_refuses_out_of_range_ids_outside_jit():
    layer = nn.embedding(3)
    params = layer.init(jax.random.key(0), 5)
    for bad in (5, -1):
        with pytest.raises(ValueError, match=rf"embedding: ids must lie in \[0, 5\) \(the 5 rows "
                                             rf"of the table E\); 1 out of range.*the first "
                                             rf"ids\[1\] = {bad}"):
            layer.apply(params, jnp.array([0, bad, 2]))
    with pytest.raises(ValueError, match="ids must be integers, got float32"):
        layer.apply(params, jnp.array([0.0, 1.0]))


def test_embedding_under_jit_fills_bad_rows_with_nan_and_checkify_reports_them():
    layer = nn.embedding(3)
    params = layer.init(jax.random.key(0), 5)
    ids = jnp.array([[0, 5], [-1, 4]])
    out = np.asarray(jax.jit(layer.apply)(params, ids))
    E = np.asarray(params["E"])
    np.testing.assert_array_equal(out[0, 0], E[0])
    np.testing.assert_array_equal(out[1, 1], E[4])
    assert np.isnan(out[0, 1]).all() and np.isnan(out[1, 0]).all()
    err, _ = checkify.checkify(jax.jit(layer.apply), errors=checkify.user_checks)(params, ids)
    with pytest.raises(checkify.JaxRuntimeError, match=r"embedding: ids must lie in \[0, 5\).*"
                                                       r"got 2 out of range"):
        err.throw()
    clip = nn.embedding(3, mode="clip")
    np.testing.assert_array_equal(np.asarray(jax.jit(clip.apply)(params, ids)), E[[[0, 4], [0, 4]]])


def test_embedding_gradients_are_unchanged_for_good_ids(rng):
    layer = nn.embedding(3)
    params = layer.init(jax.random.key(0), 6)
    ids = jnp.asarray(rng.integers(0, 6, (4, 2)))
    g = jax.grad(lambda p: jnp.sum(jax.jit(layer.apply)(p, ids) ** 2))(params)["E"]
    E = np.asarray(params["E"])
    want = np.zeros_like(E)
    np.add.at(want, np.asarray(ids).ravel(), 2 * E[np.asarray(ids).ravel()])
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6)


def test_layer_sizes_and_flags():
    with pytest.raises(ValueError, match="embedding: features must be an int >= 1, got 0"):
        nn.embedding(0)
    with pytest.raises(TypeError, match="embedding: features must be an int >= 1, got float"):
        nn.embedding(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embedding.init: vocab_size must be an int >= 1, got 0"):
        nn.embedding(2).init(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="embedding: mode must be one of"):
        nn.embedding(2, mode="wrap")
    three, two = np.int64(3), np.int64(2)
    assert nn.dense(three).init(jax.random.key(0), two)["W"].shape == (2, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dense: features must be an int >= 1, got -1"):
        nn.dense(-1)
    with pytest.raises(TypeError, match="dense: use_bias must be True or False, got str 'no'"):
        nn.dense(2, use_bias="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dense.init: input_size must be an int >= 1, got str"):
        nn.dense(2).init(jax.random.key(0), "3")  # type: ignore[arg-type]
    for name, make in (("kernel_size", lambda: nn.conv2d(2, 0)),
                       ("stride", lambda: nn.conv2d(2, 3, stride=0)),
                       ("features", lambda: nn.conv2d(0))):
        with pytest.raises(ValueError, match=f"conv2d: {name} must be an int >= 1, got 0"):
            make()
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID', got 'same'"):
        nn.conv2d(2, padding="same")


def test_layer_params_and_inputs():
    dense = nn.dense(2)
    p = dense.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"dense: params lack 'b' \(got keys \['W'\]\)"):
        dense.apply({"W": p["W"]}, jnp.zeros((1, 3)))
    with pytest.raises(TypeError, match="dense: params must be the dict that init returns"):
        dense.apply(p["W"], jnp.zeros((1, 3)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dense: x must be an array, got list"):
        dense.apply(p, [[0.0, 0.0, 0.0]])  # type: ignore[arg-type]
    conv = nn.conv2d(2, 3, padding="VALID")
    pc = conv.init(jax.random.key(0), 1)
    with pytest.raises(ValueError, match=r"with padding='VALID' the image must be at least the "
                                         r"kernel \(3 x 3\), got H, W = \(2, 5\)"):
        conv.apply(pc, jnp.zeros((1, 2, 5, 1)))
    assert conv.apply(pc, jnp.zeros((1, 3, 5, 1))).shape == (1, 1, 3, 2)


def test_dropout_rate_and_key():
    x = jnp.ones((100,))
    for rate in (1.0, -0.1, float("nan"), 1.5):
        with pytest.raises(ValueError, match=r"dropout: rate must lie in \[0, 1\)"):
            nn.dropout(jax.random.key(0), x, rate)
    for rate in ("0.5", True, np.array([0.1, 0.2]), None):
        with pytest.raises(TypeError, match=r"dropout: rate must be a float in \[0, 1\)"):
            nn.dropout(jax.random.key(0), x, rate)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rate must be a number known when tracing"):
        jax.jit(lambda r: nn.dropout(jax.random.key(0), x, r))(0.5)
    with pytest.raises(TypeError, match="dropout: key must be a PRNG key"):
        nn.dropout(0, x, 0.5)  # type: ignore[arg-type]
    want = nn.dropout(jax.random.key(1), x, 0.25)
    for rate in (np.float64(0.25), jnp.asarray(0.25)):
        np.testing.assert_array_equal(nn.dropout(jax.random.key(1), x, rate), want)  # type: ignore[arg-type]
    assert nn.dropout(None, x, 0.9) is x


# --- batching -------------------------------------------------------------------------------

Examples = namedtuple("Examples", "inputs targets mask lengths")


def _examples(n=5, T=4):
    return Examples(np.zeros((n, T), np.int32), np.zeros((n, T), np.int32),
                    np.ones((n, T), bool), np.full(n, T, np.int32))


def test_stream_windows_bad_inputs():
    tokens = np.arange(50)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        StreamWindows(tokens, None, batch_size=0, steps=5)
    with pytest.raises(TypeError, match="steps must be an int >= 1, got float 5.0"):
        StreamWindows(tokens, None, batch_size=2, steps=5.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shorter than one window of 60 steps"):
        StreamWindows(tokens, None, batch_size=1, steps=60)
    with pytest.raises(ValueError, match="a stream needs at least 2 tokens.*got 0"):
        StreamWindows(np.array([], np.int32), None, batch_size=1, steps=1)
    with pytest.raises(ValueError, match=r"tokens must be a 1-D array of integer ids, got shape "
                                         r"\(50,\) and dtype float64"):
        StreamWindows(tokens.astype(float), None, batch_size=2, steps=5)
    with pytest.raises(ValueError, match="tokens must be a 1-D array"):
        StreamWindows(tokens.reshape(5, 10), None, batch_size=2, steps=2)
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, 2\*\*31\), got values from "
                                         r"-1"):
        StreamWindows(tokens - 1, None, batch_size=2, steps=5)
    with pytest.raises(ValueError, match=r"doc_starts must have one entry per token, shape "
                                         r"\(50,\), got \(49,\)"):
        StreamWindows(tokens, np.zeros(49, bool), batch_size=2, steps=5)
    w = StreamWindows(np.int64(2) * tokens, None, batch_size=np.int64(2),  # type: ignore[arg-type]
                      steps=np.int32(5))  # type: ignore[arg-type]
    assert w.batch(np.int64(1))["inputs"].shape == (5, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"index must be an int >= 0, got -1"):
        w.batch(-1)


def test_stream_windows_of_exactly_one_window():
    w = StreamWindows(np.arange(11), None, batch_size=2, steps=5)
    assert len(w) == 1
    np.testing.assert_array_equal(w.batch(0)["inputs"].T, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(w.batch(0)["targets"].T, [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])


def test_example_batches_bad_inputs():
    ex = _examples()
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        ExampleBatches(ex, 0)
    with pytest.raises(ValueError, match=r"batch_size must lie in \[1, 5\], got 6"):
        ExampleBatches(ex, 6)
    with pytest.raises(TypeError, match="shuffle must be True or False, got str 'no'"):
        ExampleBatches(ex, 2, shuffle="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int >= 0, got float"):
        ExampleBatches(ex, 2, seed=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"examples must have the fields.*lacks \['mask', "
                                        r"'lengths'\]"):
        ExampleBatches(namedtuple("Half", "inputs targets")(ex.inputs, ex.targets), 2)
    with pytest.raises(ValueError, match="must share their first axis"):
        ExampleBatches(ex._replace(lengths=ex.lengths[:4]), 2)
    with pytest.raises(ValueError, match=r"expected inputs and targets \[N, T, ...\], mask"):
        ExampleBatches(ex._replace(mask=ex.mask[:, :3]), 2)
    with pytest.raises(ValueError, match=r"examples holds no example \(N = 0\)"):
        ExampleBatches(_examples(n=0), 1)
    b = ExampleBatches(ex, np.int64(5), shuffle=np.bool_(False))  # type: ignore[arg-type]
    assert len(b) == 1 and b.batch(3)["inputs"].shape == (4, 5)
