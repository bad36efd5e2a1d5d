"""`layer`, `stack` and `bidirectional` against explicit compositions of the
NumPy reference cells."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from tests import reference as ref
from tests.helpers import as_np

RTOL = ATOL = 3e-5
T, B, D = 6, 4, 3
LENGTHS = np.array([6, 0, 2, 5])


def inputs(rng):
    return rng.standard_normal((T, B, D))


def f32(a):
    return jnp.asarray(a, jnp.float32)


def close(got, want):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL),
                 as_np(got), as_np(want))


def test_layer_is_scan(rng):
    cell = recurrax.cells.lstm(5)
    seq = recurrax.layer(cell, reverse=True)
    params = seq.init(jax.random.key(0), D)
    xs = f32(inputs(rng))
    close(seq.apply(params, xs, lengths=jnp.asarray(LENGTHS)),
          recurrax.scan(cell, params, xs, lengths=jnp.asarray(LENGTHS), reverse=True))


@pytest.mark.parametrize("with_lengths", [False, True])
def test_stack_is_layer_after_layer(with_lengths, rng):
    seq = recurrax.stack([recurrax.cells.lstm(5), recurrax.cells.gru(4)])
    params = seq.init(jax.random.key(0), D)
    assert params[0]["W_xi"].shape == (D, 5) and params[1]["W_xr"].shape == (5, 4)
    xs = inputs(rng)
    lengths = LENGTHS if with_lengths else None
    carry, ys = seq.apply(params, f32(xs),
                          lengths=None if lengths is None else jnp.asarray(lengths))
    c1, h1 = ref.run("lstm", as_np(params[0]), xs, lengths=lengths)
    c2, h2 = ref.run("gru", as_np(params[1]), h1, lengths=lengths)
    close(ys, h2)
    close(carry, (c1, c2))


def test_stack_with_a_given_carry(rng):
    seq = recurrax.stack([recurrax.cells.rnn(4), recurrax.cells.rnn(4)])
    params = seq.init(jax.random.key(0), D)
    xs = inputs(rng)
    carry0 = (rng.standard_normal((B, 4)), rng.standard_normal((B, 4)))
    carry, ys = seq.apply(params, f32(xs), (f32(carry0[0]), f32(carry0[1])))
    c1, h1 = ref.run("rnn", as_np(params[0]), xs, carry0=carry0[0])
    c2, h2 = ref.run("rnn", as_np(params[1]), h1, carry0=carry0[1])
    close((carry, ys), ((c1, c2), h2))


def test_stack_residual_adds_each_later_layers_input(rng):
    seq = recurrax.stack([recurrax.cells.rnn(4)] * 3, residual=True)
    params = seq.init(jax.random.key(0), D)
    xs = inputs(rng)
    _, ys = seq.apply(params, f32(xs), lengths=jnp.asarray(LENGTHS))
    _, h1 = ref.run("rnn", as_np(params[0]), xs, lengths=LENGTHS)
    _, h2 = ref.run("rnn", as_np(params[1]), h1, lengths=LENGTHS)
    h2 = h2 + h1
    _, h3 = ref.run("rnn", as_np(params[2]), h2, lengths=LENGTHS)
    close(ys, h3 + h2)
    assert not np.any(np.asarray(ys)[:, 1])  # padding stays 0 through the residuals


def test_stack_residual_needs_equal_widths():
    with pytest.raises(ValueError, match="residual needs layer 1 to keep its input width 4"):
        recurrax.stack([recurrax.cells.rnn(4), recurrax.cells.rnn(5)], residual=True).init(
            jax.random.key(0), D)


def identity_seq():
    """A Seq that returns its inputs, to look at what a stack feeds a layer."""
    return recurrax.Seq(lambda key, d: {}, lambda p, xs, c=None, *, lengths=None, key=None:
                        (None, xs))


def test_stack_dropout_between_layers(rng):
    rate = 0.25
    first = recurrax.cells.rnn(64)
    seq = recurrax.stack([first, identity_seq()], dropout=rate)
    params = seq.init(jax.random.key(0), D)
    xs = f32(rng.standard_normal((20, 8, D)))
    _, h = recurrax.scan(first, params[0], xs)
    h = np.asarray(h)
    _, evaluation = seq.apply(params, xs)  # no key: no dropout
    np.testing.assert_array_equal(np.asarray(evaluation), h)
    _, dropped = seq.apply(params, xs, key=jax.random.key(1))
    dropped = np.asarray(dropped)
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], h[kept] / (1 - rate), rtol=1e-6)
    assert abs((~kept).mean() - rate) < 0.02  # 10240 entries: sd of the rate ~0.004
    _, again = seq.apply(params, xs, key=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(again), dropped)
    _, other = seq.apply(params, xs, key=jax.random.key(2))
    assert np.any(np.asarray(other) != dropped)


def test_no_dropout_after_the_last_layer(rng):
    seq = recurrax.stack([recurrax.cells.rnn(8), recurrax.cells.rnn(8)], dropout=0.5)
    params = seq.init(jax.random.key(0), D)
    xs = f32(inputs(rng))
    _, ys = seq.apply(params, xs, key=jax.random.key(3))
    assert np.all(np.asarray(ys) != 0)  # tanh outputs of the last layer, none dropped


@pytest.mark.parametrize("merge", ["concat", "sum"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_bidirectional_cells(merge, with_lengths, rng):
    seq = recurrax.bidirectional(recurrax.cells.lstm(4), recurrax.cells.gru(4), merge=merge)
    params = seq.init(jax.random.key(0), D)
    xs = inputs(rng)
    lengths = LENGTHS if with_lengths else None
    carry, ys = seq.apply(params, f32(xs),
                          lengths=None if lengths is None else jnp.asarray(lengths))
    cf, yf = ref.run("lstm", as_np(params["fwd"]), xs, lengths=lengths)
    cb, yb = ref.run("gru", as_np(params["bwd"]), xs, lengths=lengths, reverse=True)
    close(ys, np.concatenate([yf, yb], -1) if merge == "concat" else yf + yb)
    close(carry, (cf, cb))


def test_bidirectional_with_one_cell_gets_two_param_sets(rng):
    seq = recurrax.bidirectional(recurrax.cells.rnn(4))
    params = seq.init(jax.random.key(0), D)
    assert not np.allclose(params["fwd"]["W_hh"], params["bwd"]["W_hh"])
    xs = inputs(rng)
    _, ys = seq.apply(params, f32(xs), lengths=jnp.asarray(LENGTHS))
    _, yf = ref.run("rnn", as_np(params["fwd"]), xs, lengths=LENGTHS)
    _, yb = ref.run("rnn", as_np(params["bwd"]), xs, lengths=LENGTHS, reverse=True)
    close(ys, np.concatenate([yf, yb], -1))


def test_bidirectional_stacks_run_backward_within_each_length(rng):
    """A Seq backward runs every layer from the row's last valid step to 0."""
    stack = recurrax.stack([recurrax.cells.lstm(4), recurrax.cells.gru(3)])
    seq = recurrax.bidirectional(stack)
    params = seq.init(jax.random.key(0), D)
    xs = inputs(rng)
    _, ys = seq.apply(params, f32(xs), lengths=jnp.asarray(LENGTHS))
    _, f1 = ref.run("lstm", as_np(params["fwd"][0]), xs, lengths=LENGTHS)
    _, f2 = ref.run("gru", as_np(params["fwd"][1]), f1, lengths=LENGTHS)
    _, b1 = ref.run("lstm", as_np(params["bwd"][0]), xs, lengths=LENGTHS, reverse=True)
    _, b2 = ref.run("gru", as_np(params["bwd"][1]), b1, lengths=LENGTHS, reverse=True)
    close(ys, np.concatenate([f2, b2], -1))


def test_bidirectional_batch_major(rng):
    cell = recurrax.cells.gru(4)
    bm = recurrax.bidirectional(cell, time_major=False)
    tm = recurrax.bidirectional(cell)
    params = tm.init(jax.random.key(0), D)
    xs = f32(inputs(rng))
    lengths = jnp.asarray(LENGTHS)
    _, ys_tm = tm.apply(params, xs, lengths=lengths)
    _, ys_bm = bm.apply(params, jnp.swapaxes(xs, 0, 1), lengths=lengths)
    np.testing.assert_allclose(np.asarray(ys_bm), np.swapaxes(np.asarray(ys_tm), 0, 1),
                               rtol=1e-6, atol=1e-6)


def test_stack_of_bidirectional_layers_is_their_composition(rng):
    bi = recurrax.bidirectional(recurrax.cells.lstm(4))
    top = recurrax.layer(recurrax.cells.rnn(3))
    seq = recurrax.stack([bi, top])
    params = seq.init(jax.random.key(0), D)
    assert params[1]["W_xh"].shape == (8, 3)
    xs, lengths = f32(inputs(rng)), jnp.asarray(LENGTHS)
    carry, ys = seq.apply(params, xs, lengths=lengths)
    c1, h1 = bi.apply(params[0], xs, lengths=lengths)
    c2, h2 = top.apply(params[1], h1, lengths=lengths)
    close((carry, ys), ((c1, c2), h2))


def test_reverse_sequence_flips_within_each_length(rng):
    xs = rng.standard_normal((T, B, 2))
    out = np.asarray(recurrax.reverse_sequence(f32(xs), jnp.asarray(LENGTHS)))
    for b, L in enumerate(LENGTHS):
        np.testing.assert_allclose(out[:L, b], xs[:L, b][::-1], rtol=1e-6)
        np.testing.assert_allclose(out[L:, b], xs[L:, b], rtol=1e-6)
    bm = np.asarray(recurrax.reverse_sequence(f32(np.swapaxes(xs, 0, 1)), jnp.asarray(LENGTHS),
                                              time_major=False))
    np.testing.assert_allclose(bm, np.swapaxes(out, 0, 1), rtol=1e-6)


def test_combinators_compose_with_jit_and_grad(rng):
    seq = recurrax.stack([recurrax.bidirectional(recurrax.cells.gru(3)),
                          recurrax.cells.lstm(2)], dropout=0.1)
    params = seq.init(jax.random.key(0), D)
    xs, lengths = f32(inputs(rng)), jnp.asarray(LENGTHS)

    @jax.jit
    def loss(params, key):
        return jnp.sum(seq.apply(params, xs, lengths=lengths, key=key)[1] ** 2)

    grads = jax.grad(loss)(params, jax.random.key(0))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
