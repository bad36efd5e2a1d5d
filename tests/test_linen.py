"""recurrax.linen.RNN against plain recurrax.scan on the same params: init
(names and shapes of cell.init), apply with every option, jax.jit and
jax.grad, integer params entries in their own collection, and bad input
refused early, naming the argument."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
import recurrax.linen as rlinen
from recurrax import cells
from tests.test_nnx import LENGTHS, SCAN_OPTIONS, B, D, H, T, close, inputs, scan_spy, toy_cell


def test_init_makes_the_cells_params_and_apply_equals_scan():
    cell = cells.gru(H, reset_after=True)
    model = rlinen.RNN(cell, time_major=True, reverse=True, return_carry=True)
    xs = inputs((T, B, D))
    variables = model.init(jax.random.key(0), xs)
    shapes = jax.tree.map(jnp.shape, jax.eval_shape(lambda k: cell.init(k, D), jax.random.key(1)))
    assert set(variables) == {"params"}
    assert jax.tree.map(jnp.shape, dict(variables["params"])) == shapes  # W_xr, ..., b_hh
    carry = cell.initial_carry((B,)) + 0.5
    expected = recurrax.scan(cell, variables["params"], xs, carry, lengths=LENGTHS,
                             reverse=True, time_major=True)
    close(model.apply(variables, xs, carry, lengths=LENGTHS), expected)
    close(model.apply(variables, xs, carry, lengths=LENGTHS, return_carry=False), expected[1])


def test_jit_and_grad_equal_the_plain_scan():
    cell = cells.lstm(H)
    model = rlinen.RNN(cell)  # batch-major, ys alone: flax.linen.RNN's defaults
    xs, weights = inputs(), inputs((B, T, H), seed=1)
    params = model.init(jax.random.key(0), xs)["params"]

    def loss(params):
        ys: Any = model.apply({"params": params}, xs, lengths=LENGTHS)
        return jnp.sum(weights * ys ** 2)

    def plain(params):
        ys = recurrax.scan(cell, params, xs, lengths=LENGTHS, time_major=False)[1]
        return jnp.sum(weights * ys ** 2)

    close(jax.jit(jax.value_and_grad(loss))(params),
          jax.jit(jax.value_and_grad(plain))(params))


def test_options_reach_scan(monkeypatch):
    seen = scan_spy(monkeypatch, "recurrax.linen.scan")
    model = rlinen.RNN(cells.rnn(H), **SCAN_OPTIONS)
    model.init(jax.random.key(0), inputs((T, B, D)), lengths=LENGTHS)
    assert seen.pop("lengths") is LENGTHS and seen == SCAN_OPTIONS


def test_an_integer_params_entry_goes_to_the_constants_collection():
    cell = toy_cell(named=True)  # params {"kernels": (W, U), "shift": int32}
    model = rlinen.RNN(cell)
    xs = inputs()
    variables = model.init(jax.random.key(0), xs)
    assert set(variables["params"]) == {"kernels"}
    assert set(variables["constants"]) == {"shift"}
    params = {"kernels": variables["params"]["kernels"],
              "shift": variables["constants"]["shift"]}
    np.testing.assert_array_equal(params["shift"], jnp.arange(H))
    close(model.apply(variables, xs), recurrax.scan(cell, params, xs, time_major=False)[1])


def test_bad_arguments_are_refused_naming_them():
    with pytest.raises(TypeError, match="cell: expected a recurrax.Cell"):
        rlinen.RNN("lstm")  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="RNN: reverse"):
        rlinen.RNN(cells.rnn(H), reverse="yes")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="unroll"):
        rlinen.RNN(cells.rnn(H), unroll=0)
    with pytest.raises(ValueError, match="RNN: weight_grads"):
        rlinen.RNN(cells.rnn(H), weight_grads="later")
    model = rlinen.RNN(cells.rnn(H))
    with pytest.raises(TypeError, match="RNN: return_carry"):
        model.init(jax.random.key(0), inputs(), return_carry="no")
    with pytest.raises(TypeError, match=r"xs: expected an array of layout \[\*batch, T, D\]"):
        model.init(jax.random.key(0), [[1.0]])
    with pytest.raises(ValueError, match="input_size == hidden_size"):
        rlinen.RNN(cells.mut1(H)).init(jax.random.key(0), inputs())
