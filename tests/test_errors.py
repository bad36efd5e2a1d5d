"""Every error docs/design.md lists fails early, naming what was expected and what
was given."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax

KEY = jax.random.key(0)


def lstm_setup(D=3, H=4):
    cell = recurrax.cells.lstm(H)
    return cell, cell.init(KEY, D)


def test_unknown_cell_name_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        recurrax.cells.get("lstm-x", 8)
    message = str(err.value)
    assert "'lstm-x'" in message
    for name in recurrax.cells.NAMES:
        assert name in message


@pytest.mark.parametrize("name", ["mut1", "mut2"])
def test_mut1_mut2_need_input_size_equal_hidden_size(name):
    cell = recurrax.cells.get(name, 8)
    with pytest.raises(ValueError, match=r"input_size == hidden_size == 8.*got input_size=5"
                                         r".*embedding"):
        cell.init(KEY, 5)
    params = cell.init(KEY, 8)
    with pytest.raises(ValueError, match=r"input_size=5"):
        recurrax.scan(cell, params, jnp.zeros((3, 2, 5)))


def test_mut3_accepts_any_input_size():
    assert recurrax.cells.mut3(8).init(KEY, 5)["W_xz"].shape == (5, 8)


def test_wrong_input_size_for_the_params():
    cell, params = lstm_setup(D=3)
    with pytest.raises(ValueError) as err:
        recurrax.scan(cell, params, jnp.zeros((6, 2, 5)))
    message = str(err.value)
    assert "xs" in message and "(6, 2, 5)" in message
    assert "has shape (3, 4), needs (5, 4)" in message
    with pytest.raises(ValueError, match=r"x \(shape \(2, 5\)\).*needs \(5, 4\)"):
        recurrax.step(cell, params, cell.initial_carry((2,)), jnp.zeros((2, 5)))


def test_params_of_another_cell():
    cell, _ = lstm_setup()
    gru_params = recurrax.cells.gru(4).init(KEY, 3)
    with pytest.raises(ValueError, match=r"missing \[W_hf, W_hg, W_hi, W_ho, W_xf, W_xg, W_xi, "
                       r"W_xo, b_f, b_g, b_i, b_o\], "
                       r"unexpected \[W_hh, W_hr, W_hz, W_xh, W_xr, W_xz, b_h, b_r, b_z\]"):
        recurrax.scan(cell, gru_params, jnp.zeros((6, 2, 3)))


def test_carry_of_the_wrong_shape():
    cell, params = lstm_setup()
    bad = (jnp.zeros((3, 4)), jnp.zeros((3, 4)))  # batch 3, xs has batch 2
    with pytest.raises(ValueError) as err:
        recurrax.scan(cell, params, jnp.zeros((6, 2, 3)), bad)
    message = str(err.value)
    assert "carry" in message and "(3, 4)" in message and "(2, 4)" in message
    with pytest.raises(ValueError, match="carry"):  # h alone where (c, h) is needed
        recurrax.scan(cell, params, jnp.zeros((6, 2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="carry"):
        recurrax.step(cell, params, jnp.zeros((2, 4)), jnp.zeros((2, 3)))


@pytest.mark.parametrize("lengths", [[0, 7], [-1, 3]])
def test_lengths_outside_zero_to_T(lengths):
    cell, params = lstm_setup()
    with pytest.raises(ValueError, match=re.escape("[0, T] = [0, 6]")):
        recurrax.scan(cell, params, jnp.zeros((6, 2, 3)), lengths=jnp.array(lengths))


def test_lengths_of_the_wrong_shape_or_dtype():
    cell, params = lstm_setup()
    message = r"lengths: got shape \(3,\), needs the batch shape \(2,\)"
    with pytest.raises(ValueError, match=message):
        recurrax.scan(cell, params, jnp.zeros((6, 2, 3)), lengths=jnp.array([1, 2, 3]))
    with pytest.raises(ValueError, match="lengths: needs an integer dtype, got float32"):
        recurrax.scan(cell, params, jnp.zeros((6, 2, 3)), lengths=jnp.array([1.0, 2.0]))


def test_lengths_in_batch_major_layout_use_the_batch_axis():
    cell, params = lstm_setup()
    with pytest.raises(ValueError, match=re.escape("[0, T] = [0, 6]")):
        recurrax.scan(cell, params, jnp.zeros((2, 6, 3)), lengths=jnp.array([7, 1]),
                      time_major=False)


def test_xs_without_a_time_axis():
    cell, params = lstm_setup()
    message = re.escape("xs: expected an array of layout [T, *batch, D]")
    with pytest.raises(ValueError, match=message):
        recurrax.scan(cell, params, jnp.zeros((3,)))


def test_not_a_cell():
    with pytest.raises(TypeError, match="expected a recurrax.Cell"):
        # a plain function where a Cell belongs is the input under test
        recurrax.scan(lambda x: x, {}, jnp.zeros((3, 2, 3)))  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="expected a recurrax.Cell or Seq"):
        recurrax.stack([object()])  # pyright: ignore[reportArgumentType]  # the refused layer


def test_bad_options():
    cell, params = lstm_setup()
    with pytest.raises(ValueError, match="unroll"):
        recurrax.scan(cell, params, jnp.zeros((6, 2, 3)), unroll=0)
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0"):
        recurrax.cells.gru(0)
    with pytest.raises(ValueError, match="input_size must be a positive int"):
        cell.init(KEY, 0)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        recurrax.stack([cell], dropout=1.0)
    with pytest.raises(ValueError, match="merge must be 'concat' or 'sum'"):
        recurrax.bidirectional(cell, merge="mean")
    with pytest.raises(ValueError, match="forget_bias needs the forget gate"):
        recurrax.cells.lstm(4, forget_bias=1.0, forget_gate=False)


def test_bidirectional_sum_needs_equal_widths():
    seq = recurrax.bidirectional(recurrax.cells.rnn(3), recurrax.cells.rnn(4), merge="sum")
    params = seq.init(KEY, 2)
    with pytest.raises(ValueError, match="equal output widths, got 3 forward and 4 backward"):
        seq.apply(params, jnp.zeros((5, 2, 2)))


def test_errors_under_jit_are_raised_at_trace_time():
    cell, params = lstm_setup()
    with pytest.raises(ValueError, match="needs \\(5, 4\\)"):
        jax.jit(lambda x: recurrax.scan(cell, params, x))(jnp.zeros((6, 2, 5)))
    assert np.isfinite(np.asarray(
        jax.jit(lambda x: recurrax.scan(cell, params, x)[1])(jnp.zeros((6, 2, 3))))).all()
