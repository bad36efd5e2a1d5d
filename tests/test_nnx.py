"""recurrax.nnx against plain recurrax: RNN equals recurrax.scan on the same
params (every option, under nnx.jit, nnx.grad, nnx.vmap), an nnx.Optimizer
step equals optax applied by hand to the plain params, Bidirectional and Stack
equal recurrax.bidirectional and recurrax.stack, and bad input is refused
early, naming the argument."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import recurrax
import recurrax.nnx as rnnx
from recurrax import cells

B, T, D, H = 2, 5, 3, 4
LENGTHS = jnp.array([5, 2])


def inputs(shape=(B, T, D), seed=0):
    return jax.random.normal(jax.random.key(seed), shape)


def close(a, b, tol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=tol, atol=tol), a, b)


def test_params_are_the_cells_init_one_named_param_each():
    model = rnnx.RNN(cells.lstm(H), D, rngs=nnx.Rngs(params=7))
    expected = cells.lstm(H).init(nnx.Rngs(params=7).params(), D)
    state = nnx.to_pure_dict(nnx.state(model, nnx.Param))["params"]
    assert set(state) == set(expected)  # W_xi, W_hi, b_i, ...
    close(dict(state), expected, tol=0)
    close(model.recurrax_params(), expected, tol=0)


@pytest.mark.parametrize("cell, time_major, reverse, lengths, give_carry", [
    (cells.lstm(H), False, False, None, False),
    (cells.gru(H, reset_after=True), True, True, LENGTHS, True),
])
def test_call_equals_scan(cell, time_major, reverse, lengths, give_carry):
    model = rnnx.RNN(cell, D, rngs=nnx.Rngs(0), time_major=time_major, reverse=reverse,
                     return_carry=give_carry)
    xs = inputs((T, B, D) if time_major else (B, T, D))
    carry = jax.tree.map(lambda a: a + 0.5, cell.initial_carry((B,))) if give_carry else None
    expected = recurrax.scan(cell, model.recurrax_params(), xs, carry, lengths=lengths,
                             reverse=reverse, time_major=time_major)
    # ys alone unless return_carry, as flax.nnx.RNN
    close(model(xs, carry, lengths=lengths), expected if give_carry else expected[1])


#: Every scan option a wrapper takes, set away from its default.
SCAN_OPTIONS: dict[str, Any] = dict(time_major=True, reverse=True, unroll=2, remat=True,
                                    hoist=False, weight_grads="in_loop")


def scan_spy(monkeypatch, where: str) -> dict:
    """Replace `recurrax.scan` at `where` by a spy; returns the dict that
    collects the keyword arguments it is called with."""
    seen: dict = {}

    def spy(cell, params, xs, carry=None, **kwargs):
        seen.update(kwargs)
        return recurrax.scan(cell, params, xs, carry, **kwargs)

    monkeypatch.setattr(where, spy)
    return seen


def test_options_reach_scan(monkeypatch):
    seen = scan_spy(monkeypatch, "recurrax.nnx.rnn.scan")
    model = rnnx.RNN(cells.rnn(H), D, rngs=nnx.Rngs(0), **SCAN_OPTIONS)
    model(inputs((T, B, D)), lengths=LENGTHS)
    assert seen.pop("lengths") is LENGTHS and seen == SCAN_OPTIONS


def plain_loss(cell, params, xs, weights):
    return jnp.sum(weights * recurrax.scan(cell, params, xs, lengths=LENGTHS,
                                           time_major=False)[1] ** 2)


def test_vmap_over_sequences_equals_a_loop():
    cell = cells.lstm(H)
    model = rnnx.RNN(cell, D, rngs=nnx.Rngs(2), return_carry=True)
    xs = inputs()  # each row one sequence [T, D], no batch axis
    carry, ys = nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(model, xs)
    one = jax.jit(lambda x: recurrax.scan(cell, model.recurrax_params(), x, time_major=False))
    for b in range(B):
        c, y = one(xs[b])
        close((carry[0][b], carry[1][b], ys[b]), (c[0], c[1], y))


def test_jit_grad_and_an_optimizer_step_equal_the_plain_scan_and_optax():
    cell = cells.lstm(H)
    model = rnnx.RNN(cell, D, rngs=nnx.Rngs(3))
    xs, weights = inputs(), inputs((B, T, H), seed=1)
    tx = optax.adam(1e-2)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer):
        loss_fn = lambda m: jnp.sum(weights * m(xs, lengths=LENGTHS) ** 2)
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss, grads

    @jax.jit
    def by_hand(params, opt_state):  # jax.grad of the plain scan, then optax
        loss, grads = jax.value_and_grad(lambda p: plain_loss(cell, p, xs, weights))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return loss, grads, optax.apply_updates(params, updates), opt_state

    params = model.recurrax_params()
    opt_state = tx.init(params)
    for _ in range(2):
        loss, grads = train_step(model, optimizer)
        expected_loss, expected, params, opt_state = by_hand(params, opt_state)
        close(loss, expected_loss)
        close({k: v.get_value() for k, v in grads["params"].items()}, expected)
        close(model.recurrax_params(), params)


def test_bidirectional_of_stacks_sums_as_recurrax_does():
    fwd, bwd = cells.rnn(H), cells.lstm(H)
    model = rnnx.Bidirectional(rnnx.RNN(fwd, D, rngs=nnx.Rngs(0)),
                               rnnx.Stack([rnnx.RNN(bwd, D, rngs=nnx.Rngs(1))]), merge="sum")
    xs = inputs()
    reference = recurrax.bidirectional(fwd, recurrax.stack([bwd], time_major=False),
                                       merge="sum", time_major=False)
    close(model(xs, lengths=LENGTHS, return_carry=True),
          reference.apply(model.recurrax_params(), xs, lengths=LENGTHS))


def test_stack_equals_recurrax_stack():
    c1, c2 = cells.lstm(H), cells.gru(H)
    model = rnnx.Stack([
        rnnx.Bidirectional(rnnx.RNN(c1, D, rngs=nnx.Rngs(0)), rnnx.RNN(c1, D, rngs=nnx.Rngs(1))),
        rnnx.RNN(c2, 2 * H, rngs=nnx.Rngs(2)),
    ])
    xs = inputs()
    reference = recurrax.stack([recurrax.bidirectional(c1, c1, time_major=False), c2],
                               time_major=False)
    close(model(xs, lengths=LENGTHS, return_carry=True),
          reference.apply(model.recurrax_params(), xs, lengths=LENGTHS))


def test_residual_stack_with_dropout_is_recurrax_stack_in_eval_mode():
    c1, c2 = cells.gru(H), cells.mut1(H)
    model = rnnx.Stack([rnnx.RNN(c1, D, rngs=nnx.Rngs(0)), rnnx.RNN(c2, H, rngs=nnx.Rngs(1))],
                       residual=True, dropout=0.5, rngs=nnx.Rngs(3))
    xs = inputs()
    reference = recurrax.stack([c1, c2], residual=True, dropout=0.5, time_major=False)
    params = model.recurrax_params()
    model.eval()
    evaluation = reference.apply(params, xs, lengths=LENGTHS)[1]
    close(model(xs, lengths=LENGTHS), evaluation)
    # training mode: the Stack's own nnx.Dropout between layers, not after the last
    model.train()
    twin = nnx.clone(model)  # the same dropout stream, drawn from by hand below
    ys = model(xs, lengths=LENGTHS)
    h = twin.dropout(recurrax.scan(c1, params[0], xs, lengths=LENGTHS, time_major=False)[1])
    close(ys, recurrax.scan(c2, params[1], h, lengths=LENGTHS, time_major=False)[1] + h)
    assert not np.allclose(ys, evaluation)


def toy_cell(named):
    """h' = tanh(x W + h U + shift), params {"kernels": (W, U), "shift": int32} when
    `named`, else the tuple (W, U) alone (shift 0)."""

    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        kernels = (jax.random.normal(k1, (input_size, H)), jax.random.normal(k2, (H, H)))
        return {"kernels": kernels, "shift": jnp.arange(H, dtype=jnp.int32)} if named else kernels

    def step(params, h, px):
        U = params["kernels"][1] if named else params[1]
        shift = params["shift"] if named else 0
        h = jnp.tanh(px + h @ U + shift)
        return h, h

    prepare = lambda params, x: x @ (params["kernels"][0] if named else params[0])
    return recurrax.Cell(init, lambda batch_shape=(), dtype=jnp.float32: jnp.zeros(
        (*batch_shape, H), dtype), prepare, step, H)


@pytest.mark.parametrize("named", [True, False])
def test_nested_params_are_one_param_and_integer_ones_held(named):
    cell = toy_cell(named)
    model = rnnx.RNN(cell, D, rngs=nnx.Rngs(0))
    trained = {"kernels"} if named else {"params"}  # a tuple is held whole, as "params"
    assert set(nnx.state(model, nnx.Param)["params"]) == trained
    if named:
        assert isinstance(model.params["shift"], rnnx.Constant)
    xs = inputs()
    close(model(xs), recurrax.scan(cell, model.recurrax_params(), xs, time_major=False)[1])


def test_bad_arguments_are_refused_naming_them():
    def rnn(cell=None, size=D, rngs=None, **options):
        return rnnx.RNN(cells.rnn(H) if cell is None else cell, size,
                        rngs=nnx.Rngs(0) if rngs is None else rngs, **options)

    with pytest.raises(TypeError, match="cell: expected a recurrax.Cell"):
        rnn(cell=nnx.GRUCell(D, H, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="input_size must be a positive int.*use input_size=3"):
        rnn(size=3.0)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="input_size must be a positive int, got 0"):
        rnn(size=0)
    with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs"):
        rnn(rngs=jax.random.key(0))
    with pytest.raises(TypeError, match="RNN: reverse"):
        rnn(reverse="yes")
    with pytest.raises(ValueError, match="input_size == hidden_size"):
        rnn(cell=cells.mut1(H))
    with pytest.raises(ValueError, match="unroll"):
        rnn(unroll=0)
    with pytest.raises(ValueError, match="RNN: weight_grads"):
        rnn(weight_grads="later")
    with pytest.raises(TypeError, match="RNN: return_carry"):
        rnn()(inputs(), return_carry="no")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match=r"xs \(layout \[\*batch, T, D\].* has 4 input features"):
        rnn()(inputs((B, T, 4)))
    a, b = rnn(), rnn(size=H)
    with pytest.raises(TypeError, match="forward must be a recurrax.nnx RNN"):
        rnnx.Bidirectional(cells.rnn(H), a)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="same inputs.*input_size 3 and 4"):
        rnnx.Bidirectional(a, b)
    with pytest.raises(ValueError, match="build it with reverse=False"):
        rnnx.Bidirectional(a, rnn(reverse=True))
    with pytest.raises(ValueError, match="merge must be one of 'concat', 'sum'"):
        rnnx.Bidirectional(a, a, merge="mean")
    with pytest.raises(TypeError, match=r"wrap a single one in a list: Stack\(\[layer\]\)"):
        rnnx.Stack(a)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="at least one layer"):
        rnnx.Stack([])
    with pytest.raises(ValueError, match="layer 1 takes 3 input features, but layer 0 outputs 4"):
        rnnx.Stack([a, a])
    with pytest.raises(ValueError, match="same time_major"):
        rnnx.Stack([a, rnn(size=H, time_major=True)])
    with pytest.raises(ValueError, match="residual needs layer 1 to keep its input width 4"):
        rnnx.Stack([a, rnnx.Bidirectional(b, b)], residual=True)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        rnnx.Stack([a], dropout=1.0)
    with pytest.raises(TypeError, match="dropout 0.5 needs rngs"):
        rnnx.Stack([a, b], dropout=0.5)
    with pytest.raises(ValueError, match="carry must be None or a tuple of 2"):
        rnnx.Stack([a, b])(inputs(), carry=jnp.zeros((B, H)))
