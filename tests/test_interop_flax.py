"""recurrax.interop's Flax converters: every supported linen and NNX cell,
converted, gives Flax's outputs, final carries and gradients (inputs, initial
carry, weights) to float32 rounding; to_flax and from_flax invert each other
exactly; options with no recurrax equivalent are refused by name. (Flax's
cells with hand-copied weights against recurrax.scan, with lengths, are
tests/test_flax_crosscheck.py.)"""

import functools
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax
from recurrax.interop import _flax_layout, _kinds, from_flax, to_flax
from tests.helpers import Tolerance, run_docs_block

TOL = Tolerance(rtol=1e-5, atol=2e-6)
T, B, D, H = 3, 2, 3, 5

CLASSES = [nn.LSTMCell, nn.OptimizedLSTMCell, nn.GRUCell, nn.SimpleCell,
           nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell, nnx.SimpleCell]


def is_nnx(cls):
    return issubclass(cls, nnx.Module)


def randomize(tree, rng):
    """Arrays of the shapes and dtypes of `tree` (arrays or abstract values),
    drawn at random."""
    return jax.tree.map(lambda a: jnp.asarray(0.7 * rng.standard_normal(a.shape), a.dtype), tree)


def make(cls, rng):
    """A Flax cell of `cls` with every param (biases too) drawn at random, and
    its variables (None for NNX, which holds them). Flax's own initialisers
    are skipped (only the shapes are traced)."""
    if is_nnx(cls):
        module = nnx.eval_shape(lambda: cls(D, H, rngs=nnx.Rngs(0)))
        state = nnx.state(module, nnx.Param)
        nnx.update(module, randomize(state, rng))
        return module, None
    module = cls(H)
    carry = module.initialize_carry(jax.random.key(0), (B, D))
    shapes = jax.eval_shape(module.init, jax.random.key(1), carry, jnp.zeros((B, D)))
    return module, {"params": randomize(shapes["params"], rng)}


def flax_tree(module, variables):
    return (nnx.to_pure_dict(nnx.state(module, nnx.Param)) if variables is None
            else variables["params"])


def flax_loss(cls, module, tree, xs, carry, w_ys, w_carry):
    """Σ w·ys + Σ w·carry of Flax's cell run step by step, as a function of its
    params' nested dict."""
    if is_nnx(cls):
        graphdef, state = nnx.split(module, nnx.Param)
        nnx.replace_by_pure_dict(state, tree)
        module = nnx.merge(graphdef, state)

        def step(c, x):
            return module(c, x)
    else:
        def step(c, x):
            return module.apply({"params": tree}, c, x)
    ys = []
    for t in range(xs.shape[0]):
        carry, y = step(carry, xs[t])
        ys.append(y)
    carry_term = sum(jnp.sum(c * w) for c, w in zip(jax.tree.leaves(carry), w_carry,
                                                     strict=True))
    return jnp.sum(jnp.stack(ys) * w_ys) + carry_term, (carry, jnp.stack(ys))


#: The recurrax cell each Flax cell is (docs/interop.md).
REFERENCE = {"LSTMCell": lambda: recurrax.cells.lstm(H),
             "OptimizedLSTMCell": lambda: recurrax.cells.lstm(H),
             "GRUCell": lambda: recurrax.cells.gru(H, reset_after=True),
             "SimpleCell": lambda: recurrax.cells.rnn(H)}


@functools.cache
def ours(name):
    """The reference cell and Σ w·ys + Σ w·carry of its scan with gradients,
    compiled once per kind of cell."""
    cell = REFERENCE[name]()

    def loss(p, x, c, w_ys, w_carry):
        c, ys = recurrax.scan(cell, p, x, c)
        terms = jax.tree.map(lambda a, w: jnp.sum(a * w), c, w_carry)
        return jnp.sum(ys * w_ys) + sum(jax.tree.leaves(terms)), (c, ys)

    return cell, jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__.split('.')[1]}-"
                                                      f"{c.__name__}")
def test_outputs_and_gradients_match_flax(cls):
    rng = np.random.default_rng(0)
    module, variables = make(cls, rng)
    cell, params = from_flax(module, variables)
    reference, value_and_grad = ours(cls.__name__)
    xs = jnp.asarray(rng.standard_normal((T, B, D)), jnp.float32)
    carry0 = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32),
                          reference.initial_carry((B,), jnp.float32))
    w_ys = jnp.asarray(rng.standard_normal((T, B, H)), jnp.float32)
    w_carry = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32),
                           carry0)
    # the cell from_flax returns is the reference cell: one step, exactly
    assert cell.hidden_size == H
    jax.tree.map(np.testing.assert_array_equal,
                 cell.step(params, carry0, cell.prepare(params, xs[0])),
                 reference.step(params, carry0, reference.prepare(params, xs[0])))

    tree = flax_tree(module, variables)
    with jax.disable_jit():  # Flax's steps op by op: cheaper than compiling each cell's loop
        (want, (want_carry, want_ys)), want_grads = jax.value_and_grad(
            lambda t, x, c: flax_loss(cls, module, t, x, c, w_ys, jax.tree.leaves(w_carry)),
            argnums=(0, 1, 2), has_aux=True)(tree, xs, carry0)
    (got, (got_carry, got_ys)), grads = value_and_grad(params, xs, carry0, w_ys, w_carry)
    np.testing.assert_allclose(got_ys, want_ys, **TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), got_carry, want_carry)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(grads[1], want_grads[1], **TOL)  # d/d xs
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), grads[2], want_grads[2])
    # d loss / d Flax params = the pullback of the conversion applied to ours
    layout = _flax_layout.LAYOUTS[(cls.__module__.split(".")[1], cls.__name__)]
    _, pullback = jax.vjp(lambda t: _flax_layout.params_from_tree(layout, t, "test"), tree)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), pullback(grads[0])[0],
                 dict(want_grads[0]))

    # and back, exactly
    back = to_flax(cell, params, cls)
    again = from_flax(back) if is_nnx(cls) else from_flax(*back)
    assert set(again[1]) == set(params)
    for k in params:
        np.testing.assert_array_equal(again[1][k], params[k], err_msg=k)
    if is_nnx(cls):  # the rebuilt module runs, as the original does
        pair = (back(carry0, xs[0]), module(carry0, xs[0]))
    else:
        jax.tree.map(np.testing.assert_array_equal, dict(back[1]["params"]), dict(tree))
        pair = (back[0].apply(back[1], carry0, xs[0]), module.apply(variables, carry0, xs[0]))
    jax.tree.map(np.testing.assert_array_equal, *pair)


@pytest.mark.slow  # real Flax initialisers and a compiled scan: ~2 s
def test_docs_example_runs():
    namespace = run_docs_block("interop.md", "Flax to recurrax and back")
    gru, variables, ys = namespace["gru"], namespace["variables"], namespace["ys"]
    h = jnp.zeros((4, 8))
    for t in range(ys.shape[0]):  # Flax's GRUCell step by step
        h, y = gru.apply(variables, h, jnp.ones((4, 3)))
        np.testing.assert_allclose(ys[t], y, **TOL)
    assert type(namespace["fused"]) is nnx.OptimizedLSTMCell


def test_kinds_and_the_nnx_gru_without_recurrent_bias():
    rng = np.random.default_rng(1)
    cell, params = from_flax(*make(nnx.GRUCell, rng))
    np.testing.assert_array_equal(params["b_hh"], 0.0)  # NNX's dense_h has no bias
    _, linen_params = from_flax(*make(nn.GRUCell, rng))
    with pytest.raises(ValueError, match="flax.nnx.GRUCell has no b_hh"):
        to_flax(cell, linen_params, nnx.GRUCell)
    module, variables = to_flax(cell, linen_params)  # the linen GRUCell has it
    assert type(module) is nn.GRUCell and module.features == H
    for kind_cls, expected in [(nn.LSTMCell, nn.LSTMCell), (nn.SimpleCell, nn.SimpleCell)]:
        c, p = from_flax(*make(kind_cls, rng))
        assert type(to_flax(c, p)[0]) is expected
    with pytest.raises(ValueError, match="is a lstm cell, but the params are a gru's"):
        to_flax(cell, params, nn.OptimizedLSTMCell)
    with pytest.raises(TypeError, match="flax_class must be one of"):
        to_flax(cell, params, nn.MGUCell)


# ------------------------------------------------------------------ refusals

def own_promote(args, /, *, dtype=None, inexact=True):
    return args


def nnx_cell(cls, **options):
    """An NNX cell whose params are only shapes: the options are refused before
    any array is read."""
    return nnx.eval_shape(lambda: cls(D, H, rngs=nnx.Rngs(0), **options))


@pytest.mark.parametrize("build, error, words", [
    (lambda: nn.LSTMCell(H, gate_fn=jax.nn.hard_sigmoid), ValueError, "gate_fn=hard_sigmoid"),
    (lambda: nn.GRUCell(H, activation_fn=jax.nn.relu), ValueError, "activation_fn=relu"),
    (lambda: nn.SimpleCell(H, residual=True), ValueError, "residual=True"),
    (lambda: nn.OptimizedLSTMCell(H, dtype=jnp.bfloat16), ValueError, "dtype=bfloat16"),
    (lambda: nnx_cell(nnx.SimpleCell, activation_fn=jax.nn.gelu), ValueError,
     "activation_fn=gelu"),
    (lambda: nnx_cell(nnx.GRUCell, gate_fn=jax.nn.hard_sigmoid), ValueError,
     "gate_fn=hard_sigmoid"),
    (lambda: nnx_cell(nnx.LSTMCell, promote_dtype=own_promote), ValueError, "promote_dtype"),
    (lambda: nn.MGUCell(H), TypeError, "expected one of flax.linen.LSTMCell"),
    (lambda: nn.Dense(H), TypeError, "flax.linen.linear.Dense"),
], ids=["gate_fn", "activation_fn", "residual", "dtype", "nnx-activation", "nnx-gate",
        "nnx-promote", "mgu", "dense"])
def test_from_flax_refuses(build, error, words):
    module = build()
    variables = None
    if isinstance(module, nn.Dense):
        variables = {"params": {}}
    elif not is_nnx(type(module)):  # the shapes of the default cell's variables
        default = type(module)(H)
        carry = jax.eval_shape(lambda k: default.initialize_carry(k, (B, D)), jax.random.key(0))
        variables = jax.eval_shape(default.init, jax.random.key(1), carry, jnp.zeros((B, D)))
    with pytest.raises(error, match=words):
        from_flax(module, variables)


def test_from_flax_argument_errors():
    module, variables = make(nn.LSTMCell, np.random.default_rng(0))
    assert variables is not None
    with pytest.raises(TypeError, match="holds no weights; pass its variables"):
        from_flax(module)
    with pytest.raises(TypeError, match="carries its own weights"):
        from_flax(nnx_cell(nnx.SimpleCell), variables)
    with pytest.raises(ValueError, match="features=6, but its params have 5"):
        from_flax(nn.LSTMCell(H + 1), variables)
    with pytest.raises(ValueError, match="missing \\[hn/bias"):
        from_flax(nn.GRUCell(H), {"params": {"ir": {}}})
    cell, params = from_flax(module, variables["params"])  # the params dict alone also works
    assert set(params) == set(_kinds.keys("lstm"))


@pytest.mark.parametrize("name, words", [
    ("gru", r"gru \(reset_after=False\)"),
    ("lstm-f", "lstm-f"),
    ("mut2", "mut2"),
])
def test_to_flax_refuses_cells_flax_lacks(name, words):
    cell = recurrax.cells.get(name, H)
    params = jax.eval_shape(lambda k: cell.init(k, H), jax.random.key(0))
    with pytest.raises(ValueError, match=f"{words}.*which Flax has no cell for"):
        to_flax(cell, params)


def test_to_flax_checks_the_cell():
    rng = np.random.default_rng(2)
    _, params = from_flax(*make(nn.GRUCell, rng))
    with pytest.raises(ValueError, match="does not compute the gru equations"):
        to_flax(recurrax.cells.gru(H), params)  # reset before: other equations
    with pytest.raises(ValueError, match="hidden_size 6"):
        to_flax(recurrax.cells.gru(H + 1, reset_after=True), params)


def test_importing_interop_loads_neither_torch_nor_flax():
    code = ("import sys, recurrax.interop; "
            "print(sorted(m for m in ('torch', 'flax') if m in sys.modules))")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root, env={"PYTHONPATH": root, "JAX_PLATFORMS": "cpu"})
    assert out.stdout.strip() == "[]"
