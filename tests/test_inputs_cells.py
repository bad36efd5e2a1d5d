"""Bad and edge inputs to the cell constructors, `cells.get`, a cell's `init`,
and custom cells that break the `Cell` protocol (issue 16): each is refused
with the right error type and a message naming the argument (or the protocol
rule); NumPy integer sizes and NumPy bools work as Python ones do."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax as _recurrax
from recurrax.initializers import Initializers
from tests import reference as ref
from tests.helpers import ALL, build, input_size

# Typed Any: the point of this module is to pass what the signatures forbid.
recurrax: Any = _recurrax
cells: Any = _recurrax.cells

KEY = jax.random.key(0)
T, B, D, H = 4, 2, 3, 4
XS = jax.random.normal(jax.random.key(1), (T, B, D))

BAD = [
    # hidden sizes
    ("lstm-hidden-float", lambda: cells.lstm(8.0), TypeError,
     r"lstm: hidden_size must be a positive int, got float 8.0 \(use hidden_size=8\)"),
    ("gru-hidden-bool", lambda: cells.gru(True), TypeError,
     r"gru: hidden_size must be a positive int, got bool True"),
    ("rnn-hidden-str", lambda: cells.rnn("8"), TypeError,
     r"rnn: hidden_size must be a positive int, got str '8'"),
    ("mut1-hidden-none", lambda: cells.mut1(None), TypeError, r"mut1: hidden_size .*NoneType"),
    ("mut2-hidden-zero", lambda: cells.mut2(0), ValueError,
     r"mut2: hidden_size must be a positive int, got 0"),
    ("mut3-hidden-negative", lambda: cells.mut3(np.int64(-2)), ValueError,
     r"mut3: hidden_size must be a positive int, got -2"),
    ("lstm-hidden-array", lambda: cells.lstm(np.array([8])), TypeError, r"lstm: hidden_size"),
    # input sizes (init)
    ("init-input-zero", lambda: cells.lstm(H).init(KEY, 0), ValueError,
     r"lstm: input_size must be a positive int, got 0"),
    ("init-input-float", lambda: cells.gru(H).init(KEY, 3.0), TypeError,
     r"gru: input_size must be a positive int, got float 3.0 \(use input_size=3\)"),
    ("init-input-str", lambda: cells.rnn(H).init(KEY, "3"), TypeError,
     r"rnn: input_size must be a positive int, got str"),
    ("init-input-bool", lambda: cells.mut3(H).init(KEY, True), TypeError,
     r"mut3: input_size must be a positive int, got bool"),
    ("mut1-input-ne-hidden", lambda: cells.mut1(H).init(KEY, 3), ValueError,
     r"input_size == hidden_size == 4.*embedding"),
    # flags and options
    ("lstm-input_gate-str", lambda: cells.lstm(H, input_gate="no"), TypeError,
     r"lstm: input_gate must be True or False, got str 'no'"),
    ("lstm-forget_gate-int", lambda: cells.lstm(H, forget_gate=0), TypeError,
     r"lstm: forget_gate must be True or False, got int 0"),
    ("lstm-output_gate-none", lambda: cells.lstm(H, output_gate=None), TypeError,
     r"lstm: output_gate must be True or False"),
    ("lstm-forget_bias-str", lambda: cells.lstm(H, forget_bias="1"), TypeError,
     r"lstm: forget_bias must be a number, got str"),
    ("lstm-forget_bias-nan", lambda: cells.lstm(H, forget_bias=float("nan")), ValueError,
     r"lstm: forget_bias must be finite"),
    ("lstm-forget_bias-without-gate", lambda: cells.lstm(H, 1.0, forget_gate=False), ValueError,
     r"forget_bias needs the forget gate"),
    ("gru-reset_after-str", lambda: cells.gru(H, reset_after="yes"), TypeError,
     r"gru: reset_after must be True or False, got str 'yes'"),
    ("gru-reset_after-int", lambda: cells.gru(H, reset_after=1), TypeError,
     r"gru: reset_after must be True or False, got int 1"),
    ("rnn-initializers-dict", lambda: cells.rnn(H, initializers={}), TypeError,
     r"rnn: initializers must be a recurrax.initializers.Initializers"),
    # cells.get
    ("get-unknown", lambda: cells.get("LSTM", H), ValueError,
     r"unknown cell name 'LSTM'; expected one of: rnn, lstm, lstm-i"),
    ("get-name-none", lambda: cells.get(None, H), TypeError,
     r"cells.get: name must be a str, one of: rnn.*got NoneType"),
    ("get-name-list", lambda: cells.get(["lstm"], H), TypeError, r"cells.get: name must be a str"),
    ("get-hidden-float", lambda: cells.get("gru", 4.0), TypeError, r"gru: hidden_size"),
    ("get-fixed-option", lambda: cells.get("lstm-b", H, forget_bias=2.0), TypeError,
     r"cells.get: 'lstm-b' fixes forget_bias=1.0; call recurrax.cells.lstm"),
    ("get-fixed-gate", lambda: cells.get("lstm-i", H, input_gate=True), TypeError,
     r"'lstm-i' fixes input_gate=False"),
    ("get-unknown-option", lambda: cells.get("rnn", H, forget_bias=1.0), TypeError,
     r"forget_bias"),
]


@pytest.mark.parametrize("thunk, error, words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_with_a_message(thunk, error, words):
    with pytest.raises(error, match=words):
        thunk()


@pytest.mark.parametrize("name", ALL)
def test_numpy_integer_sizes_work_as_python_ints(name):
    Dn = input_size(name, H, D)
    cell = build(name, np.int64(H))  # pyright: ignore[reportArgumentType]
    assert type(cell.hidden_size) is int and cell.hidden_size == H
    params = cell.init(KEY, np.int32(Dn))
    expected = build(name, H).init(KEY, Dn)
    assert params.keys() == expected.keys()
    for k in params:
        np.testing.assert_array_equal(np.asarray(params[k]), np.asarray(expected[k]))
    xs = jax.random.normal(jax.random.key(2), (T, B, Dn))
    _, ys = recurrax.scan(cell, params, xs)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    _, reference = ref.run(name, p64, np.asarray(xs, np.float64))
    np.testing.assert_allclose(np.asarray(ys), reference, rtol=1e-5, atol=1e-6)


def test_numpy_bool_gates_are_the_named_ablations():
    for name, kw in [("lstm-i", dict(input_gate=np.bool_(False))),
                     ("lstm-f", dict(forget_gate=np.bool_(False))),
                     ("lstm-o", dict(output_gate=np.bool_(False)))]:
        a, b = cells.lstm(H, **kw), cells.get(name, H)
        assert a.init(KEY, D).keys() == b.init(KEY, D).keys()
    a = cells.gru(H, reset_after=np.bool_(True))
    assert "b_hh" in a.init(KEY, D)


def test_get_passes_other_options_on():
    cell = cells.get("lstm-b", H, initializers=Initializers(bias=jax.nn.initializers.ones))
    params = cell.init(KEY, D)
    np.testing.assert_array_equal(np.asarray(params["b_f"]), 2.0)  # 1 (bias) + 1 (lstm-b)
    np.testing.assert_array_equal(np.asarray(params["b_i"]), 1.0)
    assert cells.get("lstm-b", np.int16(3)).hidden_size == 3


# ------------------------------------------------- custom cells and the protocol


def _custom(**overrides) -> _recurrax.Cell:
    """A correct custom tanh RNN, with some of its functions replaced."""
    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        return {"W": jax.random.normal(k1, (input_size, H)) / 2,
                "U": jax.random.normal(k2, (H, H)) / 2}

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return jnp.zeros((*batch_shape, H), dtype)

    def prepare(params, xs):
        return xs @ params["W"]

    def step(params, h, px):
        h = jnp.tanh(px + h @ params["U"])
        return h, h

    fields = dict(init=init, initial_carry=initial_carry, prepare=prepare, step=step,
                  hidden_size=H)
    fields.update(overrides)
    return recurrax.Cell(**fields)


def _two_part(**overrides) -> _recurrax.Cell:
    """A custom cell whose carry is a pair `(h, h)`, as the LSTM's is."""
    base = _custom()

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        z = jnp.zeros((*batch_shape, H), dtype)
        return (z, z)

    def step(params, carry, px):
        h, _ = base.step(params, carry[1], px)
        return (h, h), h

    fields = dict(initial_carry=initial_carry, step=step)
    fields.update(overrides)
    return _custom(**fields)


def _step_list(params, carry, px):
    h, _ = _custom().step(params, carry[1], px)
    return [h, h], h


PROTOCOL = [
    ("initial_carry-without-dtype",
     _custom(initial_carry=lambda batch_shape: jnp.zeros((*batch_shape, H))), TypeError,
     r"cell.initial_carry: must accept \(batch_shape, dtype\) \(the Cell protocol.*"
     r"Add a dtype argument"),
    ("initial_carry-ignores-batch",
     _custom(initial_carry=lambda batch_shape=(), dtype=jnp.float32: jnp.zeros((H,), dtype)),
     ValueError, r"cell.initial_carry: every array of the carry must start with the batch axes "
                 r"\(2,\)"),
    ("initial_carry-none", _custom(initial_carry=lambda batch_shape=(), dtype=None: None),
     TypeError, r"cell.initial_carry: must return an array or a tuple of arrays"),
    ("hidden_size-wrong", _custom(hidden_size=5), ValueError,
     r"cell.step: must output y of shape \[\*batch, hidden_size\] = \(2, 5\).*got \(2, 4\).*"
     r"hidden_size \(5\) right"),
    ("hidden_size-float", _custom(hidden_size=4.0), TypeError,
     r"cell.hidden_size: must be a positive int.*float 4.0"),
    ("carry-list-then-tuple",
     _two_part(initial_carry=lambda batch_shape=(), dtype=jnp.float32:
               [jnp.zeros((*batch_shape, H), dtype)] * 2),
     TypeError, r"cell.step: must return a carry of the structure it was given.*must be a tuple"),
    ("carry-tuple-then-list", _two_part(step=_step_list), TypeError,
     r"cell.step: must return a carry of the structure.*must be a tuple"),
    ("step-returns-y-only", _custom(step=lambda p, h, px: jnp.tanh(px + h @ p["U"])), TypeError,
     r"cell.step: must return a pair \(carry, y\) \(the Cell protocol.*got ArrayImpl|"
     r"cell.step: must return a pair \(carry, y\).*got ShapeDtypeStruct"),
    ("step-returns-three", _custom(step=lambda p, h, px: (h, h, h)), TypeError,
     r"cell.step: must return a pair \(carry, y\).*got a tuple of 3"),
    ("step-changes-carry-shape",
     _custom(step=lambda p, h, px: (jnp.concatenate([h, h], -1), h)), ValueError,
     r"cell.step: must return a carry of the shapes and dtypes it was given.*\(2, 8\)"),
    ("step-changes-carry-dtype",
     _custom(step=lambda p, h, px: (h.astype(jnp.float16), h)), ValueError,
     r"cell.step: must return a carry of the shapes and dtypes.*float16"),
    ("prepare-drops-batch", _custom(prepare=lambda p, xs: jnp.sum(xs @ p["W"], axis=-2)),
     ValueError, r"cell.prepare: must keep the leading axes of its input .*\(2, 3\)"),
]


@pytest.mark.parametrize("cell, error, words", [c[1:] for c in PROTOCOL],
                         ids=[c[0] for c in PROTOCOL])
def test_custom_cell_that_breaks_the_protocol_is_named(cell, error, words):
    params = cell.init(KEY, D)
    with pytest.raises(error, match=words):
        recurrax.scan(cell, params, XS)
    with pytest.raises(error, match=words):  # the same under jit, before anything runs
        jax.jit(lambda p, xs: recurrax.scan(cell, p, xs, lengths=jnp.array([4, 2])))(params, XS)


STEP_PROTOCOL = [c for c in PROTOCOL if c[0] in {
    "initial_carry-without-dtype", "hidden_size-wrong", "hidden_size-float",
    "carry-tuple-then-list", "step-returns-three", "step-changes-carry-shape",
    "prepare-drops-batch"}]


@pytest.mark.parametrize("cell, error, words", [c[1:] for c in STEP_PROTOCOL],
                         ids=[c[0] for c in STEP_PROTOCOL])
def test_step_names_the_broken_protocol_rule(cell, error, words):
    params = cell.init(KEY, D)
    carry = cell.initial_carry((B,))
    with pytest.raises(error, match=words):
        recurrax.step(cell, params, carry, XS[0])


def test_a_correct_custom_cell_runs_and_a_list_carry_throughout_is_fine():
    cell = _custom()
    params = cell.init(KEY, D)
    carry, ys = recurrax.scan(cell, params, XS)
    W, U = np.asarray(params["W"], np.float64), np.asarray(params["U"], np.float64)
    h = np.zeros((B, H))
    for t in range(T):
        h = np.tanh(np.asarray(XS[t], np.float64) @ W + h @ U)
        np.testing.assert_allclose(np.asarray(ys[t]), h, rtol=1e-5, atol=1e-6)

    def listed_step(params, carry, px):
        h, _ = cell.step(params, carry[1], px)
        return [h, h], h
    listed = _two_part(step=listed_step,
                       initial_carry=lambda batch_shape=(), dtype=jnp.float32:
                       [jnp.zeros((*batch_shape, H), dtype)] * 2)
    _, ys_listed = recurrax.scan(listed, params, XS)
    np.testing.assert_allclose(np.asarray(ys_listed), np.asarray(ys), rtol=1e-6, atol=1e-7)
