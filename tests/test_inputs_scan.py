"""Bad and edge inputs to `scan`, `step`, the combinators (`layer`, `stack`,
`bidirectional`, `with_resets`) and the masking helpers (issue 16): each bad
input is refused before any work with the right error type and a message that
names the argument; each edge input gives the result an independent
reference gives. Non-finite values in padded steps reach neither the outputs
nor the gradients."""

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import recurrax as _recurrax
from recurrax import resets as _resets
from tests import reference as ref
from tests.helpers import ALL, build, finite_difference_grad, input_size

# Typed Any: the point of this module is to pass what the signatures forbid.
recurrax: Any = _recurrax
append_flags: Any = _resets.append_flags

KEY = jax.random.key(0)
T, B, D, H = 5, 3, 2, 4
CELL = recurrax.cells.lstm(H)
PARAMS = CELL.init(KEY, D)
XS = jax.random.normal(jax.random.key(1), (T, B, D))
LENGTHS = jnp.array([5, 2, 0])


def scan(xs: Any = XS, carry=None, **kw):
    return lambda: recurrax.scan(CELL, PARAMS, xs, carry, **kw)


def drop(params, name):
    return {k: v for k, v in params.items() if k != name}


# (id, thunk, error type, words of the message (a regex)).
BAD = [
    # flags that take a bool
    ("scan-reverse-str", scan(reverse="no"), TypeError, r"reverse: expected a bool.*str 'no'"),
    ("scan-reverse-int", scan(reverse=1), TypeError, r"reverse: expected a bool.*int 1"),
    ("scan-reverse-none", scan(reverse=None), TypeError, r"reverse: expected a bool"),
    ("scan-time_major-str", scan(time_major="yes"), TypeError, r"time_major: expected a bool"),
    ("scan-remat-str", scan(remat="False"), TypeError, r"remat: expected a bool"),
    ("scan-hoist-str", scan(hoist="auto"), TypeError,
     r"hoist: expected a bool \(True, False or None\)"),
    ("scan-hoist-int", scan(hoist=0), TypeError, r"hoist: expected a bool"),
    ("scan-unroll-str", scan(unroll="2"), TypeError, r"unroll: expected a positive int or a bool"),
    ("scan-unroll-float", scan(unroll=2.0), TypeError, r"unroll: expected a positive int.*float"),
    ("scan-unroll-zero", scan(unroll=0), ValueError, r"unroll: expected a positive int.*got 0"),
    ("scan-unroll-negative", scan(unroll=-3), ValueError, r"unroll: .*got -3"),
    ("scan-weight_grads", scan(weight_grads="after"), ValueError,
     r"weight_grads must be one of 'after_loop', 'in_loop', got 'after'"),
    # xs
    ("scan-xs-list", scan(xs=[[[0.0, 0.0]]]), TypeError,
     r"xs: expected an array.*got list.*jnp.asarray"),
    ("scan-xs-none", scan(xs=None), TypeError, r"xs: expected an array.*got NoneType"),
    ("scan-xs-scalar", scan(xs=1.0), TypeError, r"xs: expected an array.*got float"),
    ("scan-xs-1d", scan(xs=jnp.zeros(2)), ValueError,
     r"xs: expected an array of layout \[T, \*batch, D\]"),
    ("scan-xs-bool", scan(xs=jnp.zeros((T, B, D), bool)), TypeError, r"xs: expected a real.*bool"),
    ("scan-xs-complex", scan(xs=jnp.zeros((T, B, D), jnp.complex64)), TypeError,
     r"xs: expected a real.*complex64"),
    ("scan-xs-str", scan(xs=np.array([[["a", "b"]]])), TypeError, r"xs: expected a real"),
    ("scan-xs-width", scan(xs=jnp.zeros((T, B, 3))), ValueError,
     r"xs \(layout \[T, \*batch, D\], shape \(5, 3, 3\)\) has 3 input features"),
    # lengths
    ("scan-lengths-float", scan(lengths=jnp.array([1.0, 2.0, 3.0])), ValueError,
     r"lengths: needs an integer dtype, got float32"),
    ("scan-lengths-bool", scan(lengths=jnp.array([True, False, True])), ValueError,
     r"lengths: needs an integer dtype, got bool"),
    ("scan-lengths-negative", scan(lengths=jnp.array([1, -1, 2])), ValueError,
     re.escape("lengths: every length must lie in [0, T] = [0, 5]; got values from -1")),
    ("scan-lengths-too-long", scan(lengths=jnp.array([1, 6, 2])), ValueError,
     re.escape("[0, T] = [0, 5]; got values from 1 to 6")),
    ("scan-lengths-shape", scan(lengths=jnp.array([1, 2])), ValueError,
     re.escape("lengths: got shape (2,), needs the batch shape (3,)")),
    ("scan-lengths-scalar", scan(lengths=3), ValueError,
     re.escape("lengths: got shape (), needs the batch shape (3,)")),
    ("scan-lengths-time-major-false", scan(xs=jnp.zeros((B, T, D)), time_major=False,
                                           lengths=jnp.array([6, 1, 1])), ValueError,
     re.escape("[0, T] = [0, 5]")),
    # params
    ("scan-params-missing", lambda: recurrax.scan(CELL, drop(PARAMS, "W_hi"), XS), ValueError,
     r"params: do not fit.*missing \[W_hi\], unexpected \[\]"),
    ("scan-params-extra", lambda: recurrax.scan(CELL, {**PARAMS, "W_zz": PARAMS["b_i"]}, XS),
     ValueError, r"missing \[\], unexpected \[W_zz\]"),
    ("scan-params-none", lambda: recurrax.scan(CELL, None, XS), ValueError,
     r"params: do not fit.*missing \[W_hf"),
    ("scan-params-shape", lambda: recurrax.scan(CELL, {**PARAMS, "W_hi": jnp.zeros((H, H + 1))},
                                                XS),
     ValueError, re.escape("params['W_hi'] has shape (4, 5), needs (4, 4)")),
    ("scan-params-int", lambda: recurrax.scan(CELL, {k: v.astype(jnp.int32) for k, v in
                                                     PARAMS.items()}, XS.astype(jnp.int32)),
     TypeError, r"params: the cell computes in int32.*needs floating params: cast them"),
    ("scan-params-list", lambda: recurrax.scan(CELL, list(PARAMS.values()), XS), ValueError,
     r"params: do not fit this cell.*missing \[W_hf"),
    # carry
    ("scan-carry-h-only", scan(carry=jnp.zeros((B, H))), ValueError,
     r"carry: got .*need .*structure of cell.initial_carry"),
    ("scan-carry-batch", scan(carry=(jnp.zeros((2, H)), jnp.zeros((2, H)))), ValueError,
     r"carry: got \{\[0\]: \(2, 4\).*batch shape \(3,\)"),
    ("scan-carry-width", scan(carry=(jnp.zeros((B, 5)), jnp.zeros((B, 5)))), ValueError,
     r"carry: .*hidden size 4"),
    ("scan-carry-list", scan(carry=[jnp.zeros((B, H)), jnp.zeros((B, H))]), TypeError,
     r"carry: got a list, but cell.initial_carry gives a tuple.*tuple\(carry\)"),
    ("scan-cell-not-a-cell", lambda: recurrax.scan("lstm", PARAMS, XS), TypeError,
     r"cell: expected a recurrax.Cell"),
    # step
    ("step-x-list", lambda: recurrax.step(CELL, PARAMS, CELL.initial_carry((B,)), [[0.0, 0.0]]),
     TypeError, r"x: expected an array of layout \[\*batch, D\].*list"),
    ("step-x-scalar", lambda: recurrax.step(CELL, PARAMS, CELL.initial_carry(()), jnp.float32(1)),
     ValueError, r"x: expected an array of layout \[\*batch, D\]"),
    ("step-carry-batch", lambda: recurrax.step(CELL, PARAMS, CELL.initial_carry((2,)),
                                               jnp.zeros((B, D))),
     ValueError, r"carry: got .*batch shape \(3,\)"),
    ("step-carry-list", lambda: recurrax.step(CELL, PARAMS, list(CELL.initial_carry((B,))),
                                              jnp.zeros((B, D))),
     TypeError, r"carry: got a list.*tuple\(carry\)"),
    # layer, stack, bidirectional: options checked when the Seq is built
    ("layer-not-a-cell", lambda: recurrax.layer(recurrax.layer(CELL)), TypeError,
     r"layer: expected a recurrax.Cell, got Seq"),
    ("layer-reverse-str", lambda: recurrax.layer(CELL, reverse="no"), TypeError,
     r"layer: reverse: expected a bool.*'no'"),
    ("layer-hoist-str", lambda: recurrax.layer(CELL, hoist="yes"), TypeError, r"layer: hoist"),
    ("layer-remat-int", lambda: recurrax.layer(CELL, remat=1), TypeError, r"layer: remat"),
    ("layer-time_major-str", lambda: recurrax.layer(CELL, time_major="no"), TypeError,
     r"layer: time_major"),
    ("layer-unroll-float", lambda: recurrax.layer(CELL, unroll=1.5), TypeError, r"unroll"),
    ("layer-weight_grads", lambda: recurrax.layer(CELL, weight_grads=None), ValueError,
     r"layer: weight_grads must be one of"),
    ("stack-a-cell", lambda: recurrax.stack(CELL), TypeError,
     r"stack: layers must be a list.*stack\(\[cell\]\)"),
    ("stack-not-iterable", lambda: recurrax.stack(3), TypeError,
     r"stack: layers must be a list.*int"),
    ("stack-empty", lambda: recurrax.stack([]), ValueError, r"stack: needs at least one layer"),
    ("stack-part", lambda: recurrax.stack([CELL, "gru"]), TypeError,
     r"stack: expected a recurrax.Cell or Seq, got str"),
    ("stack-residual-str", lambda: recurrax.stack([CELL], residual="yes"), TypeError,
     r"stack: residual: expected a bool"),
    ("stack-dropout-str", lambda: recurrax.stack([CELL], dropout="0.1"), TypeError,
     r"stack: dropout must be a float in \[0, 1\), got str"),
    ("stack-dropout-one", lambda: recurrax.stack([CELL], dropout=1.0), ValueError,
     r"stack: dropout must lie in \[0, 1\), got 1.0"),
    ("stack-dropout-nan", lambda: recurrax.stack([CELL], dropout=float("nan")), ValueError,
     r"stack: dropout must lie in \[0, 1\)"),
    ("stack-time_major-str", lambda: recurrax.stack([CELL], time_major="no"), TypeError,
     r"stack: time_major"),
    ("stack-params-count", lambda: recurrax.stack([CELL, CELL]).apply((PARAMS,), XS), ValueError,
     r"stack: params must be a tuple of 2 entries"),
    ("stack-carry-count", lambda: recurrax.stack([CELL]).apply((PARAMS,), XS, (None, None)),
     ValueError, r"stack: carry must be None or a tuple of 1 carries"),
    ("bidirectional-merge", lambda: recurrax.bidirectional(CELL, merge="mean"), ValueError,
     r"merge must be 'concat' or 'sum', got 'mean'"),
    ("bidirectional-merge-none", lambda: recurrax.bidirectional(CELL, merge=None), ValueError,
     r"merge must be 'concat' or 'sum', got None"),
    ("bidirectional-time_major", lambda: recurrax.bidirectional(CELL, time_major="no"), TypeError,
     r"bidirectional: time_major"),
    ("bidirectional-bwd", lambda: recurrax.bidirectional(CELL, "gru"), TypeError,
     r"bidirectional: expected a recurrax.Cell or Seq, got str"),
    ("bidirectional-carry", lambda: recurrax.bidirectional(CELL).apply(
        recurrax.bidirectional(CELL).init(KEY, D), XS, (None,)), ValueError,
     r"bidirectional: carry must be None or a tuple of 2 carries"),
    ("bidirectional-seq-lengths", lambda: _bi_seq().apply(_bi_seq().init(KEY, D), XS,
                                                           lengths=jnp.array([9, 1, 1])),
     ValueError, re.escape("lengths: every length must lie in [0, T] = [0, 5]")),
    ("bidirectional-params-missing", lambda: recurrax.bidirectional(CELL).apply(
        {"fwd": PARAMS}, XS), ValueError,
     r"bidirectional: params must be a dict with the keys 'fwd' and 'bwd'.*got \['fwd'\]"),
    ("bidirectional-params-tuple", lambda: recurrax.bidirectional(CELL).apply(
        (PARAMS, PARAMS), XS), ValueError, r"bidirectional: params must be a dict.*got tuple"),
    ("stack-key-int", lambda: recurrax.stack([CELL, CELL], dropout=0.5).apply(
        (PARAMS, CELL.init(KEY, H)), XS, key=3), TypeError,
     r"key: expected a PRNG key \(e.g. jax.random.key\(0\)\) or None.*got int"),
    ("stack-residual-width", lambda: recurrax.stack(
        [CELL, recurrax.cells.lstm(H + 1)], residual=True).init(KEY, D), ValueError,
     r"stack: residual needs layer 1 to keep its input width 4, but it outputs 5"),
    # with_resets
    ("with_resets-not-a-cell", lambda: recurrax.with_resets("lstm"), TypeError,
     r"cell: expected a recurrax.Cell"),
    ("with_resets-input-size-1", lambda: recurrax.with_resets(CELL).init(KEY, 1), ValueError,
     r"with_resets: input_size: must be an int >= 2, got 1"),
    ("with_resets-input-size-float", lambda: recurrax.with_resets(CELL).init(KEY, 3.0), TypeError,
     r"with_resets: input_size: expected an int >= 2, got float 3.0 \(use 3\)"),
    ("append_flags-shape", lambda: append_flags(XS, jnp.zeros((T,))), ValueError,
     r"append_flags: resets must have the shape of xs without its last axis, \(5, 3\); got \(5,\)"),
    # sequence_mask, reverse_sequence
    ("sequence_mask-T-str", lambda: recurrax.sequence_mask(LENGTHS, "5"), TypeError,
     r"sequence_mask: T: expected an int >= 0, got str"),
    ("sequence_mask-T-float", lambda: recurrax.sequence_mask(LENGTHS, 5.0), TypeError,
     r"sequence_mask: T: expected an int >= 0, got float 5.0 \(use 5\)"),
    ("sequence_mask-T-negative", lambda: recurrax.sequence_mask(LENGTHS, -1), ValueError,
     r"sequence_mask: T: must be an int >= 0, got -1"),
    ("sequence_mask-lengths-float", lambda: recurrax.sequence_mask(jnp.array([1.5]), 5),
     TypeError, r"sequence_mask: lengths must be integers, got .*float32"),
    ("sequence_mask-time_major", lambda: recurrax.sequence_mask(LENGTHS, 5, time_major="no"),
     TypeError, r"sequence_mask: time_major: expected a bool"),
    ("reverse_sequence-xs-list", lambda: recurrax.reverse_sequence([[[1.0]]]), TypeError,
     r"reverse_sequence: xs: expected an array"),
    ("reverse_sequence-time_major", lambda: recurrax.reverse_sequence(XS, time_major="no"),
     TypeError, r"reverse_sequence: time_major: expected a bool"),
    ("reverse_sequence-lengths-long", lambda: recurrax.reverse_sequence(XS, jnp.array([6, 1, 1])),
     ValueError, re.escape("reverse_sequence: lengths: every length must lie in [0, T] = [0, 5]")),
    ("reverse_sequence-lengths-shape", lambda: recurrax.reverse_sequence(XS, jnp.array([1, 1])),
     ValueError,
     re.escape("reverse_sequence: lengths: got shape (2,), needs the batch shape (3,)")),
    ("reverse_sequence-lengths-float", lambda: recurrax.reverse_sequence(XS, jnp.ones(3)),
     ValueError, r"reverse_sequence: lengths: needs an integer dtype, got float32"),
]


def _bi_seq():
    return recurrax.bidirectional(recurrax.stack([CELL]))


@pytest.mark.parametrize("thunk, error, words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_with_a_message(thunk, error, words):
    with pytest.raises(error, match=words):
        thunk()


def test_flags_are_checked_before_any_tracing(monkeypatch):
    """A bad flag is refused before the cell is called at all."""
    def boom(*args, **kwargs):
        raise AssertionError("the cell ran")
    cell = CELL._replace(prepare=boom, step=boom, init=boom)
    for kw in [dict(reverse="no"), dict(unroll="1"), dict(hoist="yes"), dict(time_major=0)]:
        with pytest.raises(TypeError):
            recurrax.scan(cell, PARAMS, XS, **kw)


# ---------------------------------------------------------------- edge inputs


def _reference_run(xs, lengths=None, reverse=False):
    """The LSTM in NumPy (tests/reference.py): (final carry, ys)."""
    p = {k: np.asarray(v, np.float64) for k, v in PARAMS.items()}
    return ref.run("lstm", p, np.asarray(xs, np.float64), lengths, reverse)


def test_empty_sequence_returns_the_initial_carry_and_no_outputs():
    for weight_grads in ("after_loop", "in_loop"):
        xs = jnp.zeros((0, B, D))
        carry, ys = recurrax.scan(CELL, PARAMS, xs, weight_grads=weight_grads)
        assert ys.shape == (0, B, H)
        for c in carry:
            np.testing.assert_array_equal(np.asarray(c), np.zeros((B, H)))
        def loss(p, xs=xs, weight_grads=weight_grads):
            return jnp.sum(recurrax.scan(CELL, p, xs, weight_grads=weight_grads)[0][1])
        grads = jax.grad(loss)(PARAMS)
        assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(grads))


def test_empty_batch():
    xs = jnp.zeros((T, 0, D))
    carry, ys = recurrax.scan(CELL, PARAMS, xs, lengths=jnp.zeros((0,), jnp.int32))
    assert ys.shape == (T, 0, H) and carry[0].shape == (0, H)


def test_all_lengths_zero_keep_the_carry_and_output_zeros():
    carry0 = (jnp.ones((B, H)), jnp.full((B, H), 0.5))
    carry, ys = recurrax.scan(CELL, PARAMS, XS, carry0, lengths=jnp.zeros(B, jnp.int32))
    np.testing.assert_array_equal(np.asarray(ys), 0.0)
    for c, c0 in zip(carry, carry0, strict=True):
        np.testing.assert_array_equal(np.asarray(c), np.asarray(c0))


@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_as_a_list_or_numpy_ints_match_the_reference(reverse):
    finals, expected = _reference_run(XS, [5, 2, 0], reverse)
    for lengths in ([5, 2, 0], np.array([5, 2, 0], np.int64), jnp.array([5, 2, 0], jnp.int8)):
        carry, ys = recurrax.scan(CELL, PARAMS, XS, lengths=lengths, reverse=reverse)
        np.testing.assert_allclose(np.asarray(ys), expected, rtol=1e-5, atol=1e-6)
        for c, final in zip(carry, finals, strict=True):
            np.testing.assert_allclose(np.asarray(c), final, rtol=1e-5, atol=1e-6)


def test_full_lengths_equal_no_lengths():
    _, a = recurrax.scan(CELL, PARAMS, XS)
    _, b = recurrax.scan(CELL, PARAMS, XS, lengths=jnp.full(B, T))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_numpy_bools_and_ints_are_accepted_as_options():
    _, expected = _reference_run(XS, reverse=True)
    _, ys = recurrax.scan(CELL, PARAMS, XS, reverse=np.bool_(True), unroll=np.int64(2),
                          hoist=np.bool_(False), remat=np.bool_(False),
                          time_major=np.bool_(True))
    np.testing.assert_allclose(np.asarray(ys), expected, rtol=1e-5, atol=1e-6)
    seq = recurrax.layer(CELL, reverse=np.bool_(True), unroll=np.int32(3))
    np.testing.assert_allclose(np.asarray(seq.apply(PARAMS, XS)[1]), expected, rtol=1e-5,
                               atol=1e-6)
    mask = recurrax.sequence_mask(LENGTHS, np.int64(T), time_major=np.bool_(False))
    expected_mask = np.arange(T)[None, :] < np.array([5, 2, 0])[:, None]
    np.testing.assert_array_equal(np.asarray(mask), expected_mask)


def test_unroll_true_and_lengths_in_numpy_int64_under_jit():
    f = jax.jit(lambda xs, lengths: recurrax.scan(CELL, PARAMS, xs, lengths=lengths, unroll=True))
    _, ys = f(XS, np.array([5, 2, 0]))
    _, expected = _reference_run(XS, [5, 2, 0])
    np.testing.assert_allclose(np.asarray(ys), expected, rtol=1e-5, atol=1e-6)


def test_input_dtypes_that_promote():
    """Integer, bfloat16 and NumPy float64 inputs run in the params' float32."""
    _, expected = _reference_run(np.round(np.asarray(XS) * 4))
    for xs in (jnp.round(XS * 4).astype(jnp.int32), np.round(np.asarray(XS, np.float64) * 4),
               jnp.round(XS * 4).astype(jnp.bfloat16)):
        _, ys = recurrax.scan(CELL, PARAMS, xs)
        assert ys.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(ys), expected, rtol=1e-5, atol=1e-6)


def test_several_batch_axes_with_lengths_match_the_reference():
    xs = jax.random.normal(jax.random.key(4), (T, 2, 3, D))
    lengths = np.array([[5, 1, 0], [2, 3, 4]])
    _, ys = recurrax.scan(CELL, PARAMS, xs, lengths=lengths)
    _, expected = _reference_run(np.asarray(xs).reshape(T, 6, D), lengths.reshape(6))
    np.testing.assert_allclose(np.asarray(ys).reshape(T, 6, H), expected, rtol=1e-5, atol=1e-6)


def test_combinators_on_empty_time_and_batch():
    model = recurrax.stack([CELL, CELL])
    params = model.init(KEY, D)
    carry, ys = model.apply(params, jnp.zeros((0, B, D)))
    assert ys.shape == (0, B, H) and all(np.all(np.asarray(c) == 0) for c in
                                         jax.tree.leaves(carry))
    bi = recurrax.bidirectional(CELL)
    _, ys = bi.apply(bi.init(KEY, D), jnp.zeros((T, 0, D)), lengths=jnp.zeros((0,), jnp.int32))
    assert ys.shape == (T, 0, 2 * H)


def test_stack_of_a_generator_and_a_tuple():
    a = recurrax.stack(c for c in [CELL])
    b = recurrax.stack((CELL,))
    p = a.init(KEY, D)
    np.testing.assert_array_equal(np.asarray(a.apply(p, XS)[1]), np.asarray(b.apply(p, XS)[1]))


def test_append_flags_and_with_resets_match_a_manual_reset():
    flags = jnp.zeros((T, B)).at[2].set(1.0)
    cell = recurrax.with_resets(CELL)
    assert cell.init(KEY, D + 1).keys() == PARAMS.keys()
    _, ys = recurrax.scan(cell, PARAMS, append_flags(XS, flags))
    _, head = recurrax.scan(CELL, PARAMS, XS[:2])
    _, tail = recurrax.scan(CELL, PARAMS, XS[2:])
    np.testing.assert_allclose(np.asarray(ys), np.concatenate([head, tail]), rtol=1e-6, atol=1e-7)


# ------------------------------------------- non-finite values in padded steps


def _poisoned(xs, lengths, time_major=True):
    """`xs` with NaN at every padded step, and one inf."""
    mask = np.asarray(recurrax.sequence_mask(jnp.asarray(lengths), xs.shape[0 if time_major else 1],
                                             time_major))[..., None]
    bad = np.where(mask, np.asarray(xs), np.nan)
    index = np.argwhere(~mask[..., 0])[0]
    bad[tuple(index)] = np.inf
    return jnp.asarray(bad, xs.dtype), jnp.asarray(np.where(mask, np.asarray(xs), 0.0), xs.dtype)


#: Each option of `scan` on both of its values somewhere.
OPTIONS = [dict(weight_grads="after_loop", hoist=True, reverse=False, remat=False),
           dict(weight_grads="in_loop", hoist=False, reverse=True, remat=False),
           dict(weight_grads="after_loop", hoist=False, reverse=True, remat=True),
           dict(weight_grads="in_loop", hoist=True, reverse=False, remat=True),
           dict(weight_grads="after_loop", hoist=False, reverse=False, remat=False),
           dict(weight_grads="in_loop", hoist=True, reverse=True, remat=False)]


def _every_cell_once(choices, ids):
    """(name, choice) for every cell and choice: each cell with one choice in
    turn (every choice used) in the default run, the rest marked slow."""
    return [pytest.param(name, c, id=f"{name}-{ids(c)}",
                         marks=() if j == i % len(choices) else pytest.mark.slow)
            for i, name in enumerate(ALL) for j, c in enumerate(choices)]


@pytest.mark.parametrize("name, options", _every_cell_once(
    OPTIONS, lambda o: "-".join(map(str, o.values()))))
def test_nan_in_padding_reaches_neither_values_nor_gradients(name, options):
    Dn = input_size(name, H, D)
    cell = build(name, H)
    params = cell.init(KEY, Dn)
    xs = jax.random.normal(jax.random.key(2), (T, B, Dn))
    bad, clean = _poisoned(xs, LENGTHS)

    def loss(p, xs):
        carry, ys = recurrax.scan(cell, p, xs, lengths=LENGTHS, **options)
        return jnp.sum(ys ** 2) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(carry))
    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    value, grads = f(params, bad)
    expected_value, expected = f(params, clean)
    assert np.isfinite(value) and value == expected_value
    for g, e in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        assert np.all(np.isfinite(np.asarray(g)))
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["lstm", pytest.param("gru-reset-after", marks=pytest.mark.slow),
                                  pytest.param("mut1", marks=pytest.mark.slow)])
def test_nan_in_padding_through_bidirectional_stack_and_batch_major(name):
    Dn = input_size(name, H, H)
    cell = build(name, H)
    models = [recurrax.bidirectional(cell, merge="sum", time_major=False),
              recurrax.bidirectional(recurrax.stack([cell, cell], time_major=False),
                                     time_major=False),
              recurrax.stack([cell, cell], residual=True, time_major=False)]
    xs = jax.random.normal(jax.random.key(3), (B, T, Dn))
    bad, clean = _poisoned(xs, LENGTHS, time_major=False)
    for model in models:
        params = model.init(KEY, Dn)

        def loss(p, xs, model=model):
            return jnp.sum(model.apply(p, xs, lengths=LENGTHS)[1] ** 2)
        f = jax.jit(jax.grad(loss))
        grads, expected = f(params, bad), f(params, clean)
        for g, e in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
            assert np.all(np.isfinite(np.asarray(g)))
            np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, weight_grads",
                         _every_cell_once(["after_loop", "in_loop"], str))
def test_gradient_with_nan_padding_matches_finite_differences(name, weight_grads, rng):
    Dn = input_size(name, 3, 2)
    lengths = jnp.array([4, 1])
    with jax.enable_x64(True):
        cell = build(name, 3)
        p = {k: jnp.asarray(v) for k, v in ref.random_params(name, Dn, 3, rng).items()}
        xs = jnp.asarray(rng.standard_normal((4, 2, Dn)))
        bad, _ = _poisoned(xs, lengths)
        w = jnp.asarray(rng.standard_normal((4, 2, 3)))
        flat, unravel = ravel_pytree(p)

        def loss(flat):
            carry, ys = recurrax.scan(cell, unravel(flat), bad, lengths=lengths,
                                      weight_grads=weight_grads, hoist=False)
            return jnp.sum(w * ys) + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(carry))

        exact = jax.jit(jax.grad(loss))(flat)
        numeric = jax.jit(lambda v: finite_difference_grad(loss, v))(flat)
        assert np.all(np.isfinite(np.asarray(exact)))
        np.testing.assert_allclose(np.asarray(exact), np.asarray(numeric), rtol=1e-6, atol=1e-8)
        assert np.abs(np.asarray(exact)).max() > 1e-3
