"""`recurrax._deferred`: `scan(weight_grads="after_loop")`'s derivative gives
autodiff's gradients (float64 finite differences, and JAX's own
differentiation of the loop, `weight_grads="in_loop"`), really leaves the
weight gradients out of the backward loop (counted in the compiled program),
works in forward mode too (also through a `jax.jit` that reverse mode traced
first), and serves a user-written cell that marks its matmuls with
`recurrax.cells.recurrent_matmul`."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import recurrax
from tests.helpers import build, finite_difference_grad, input_size, loop_matmuls

T, B, H = 5, 3, 4


def _problem(name, dtype=jnp.float32, batch=(B,)):
    D = input_size(name, H, 2)
    cell = build(name, H)
    params = jax.tree.map(lambda a: (a + 0.1).astype(dtype), cell.init(jax.random.key(0), D))
    xs = jax.random.normal(jax.random.key(1), (T, *batch, D), dtype)
    carry0 = jax.tree.map(lambda z: jnp.full(z.shape, 0.3, dtype),
                          cell.initial_carry(batch, dtype))
    weights = jax.random.normal(jax.random.key(2), (T, *batch, H), dtype)
    return cell, params, xs, carry0, weights


def _options(kw: dict[str, Any]) -> dict[str, Any]:
    """`scan`'s keyword arguments `kw`, with `lengths` (if given) as an array."""
    return dict(kw, lengths=jnp.asarray(kw["lengths"])) if "lengths" in kw else kw


def _loss(cell, weights, **kw: Any):
    kw = _options(kw)

    def loss(params, xs, carry0):
        carry, ys = recurrax.scan(cell, params, xs, carry0, **kw)
        return jnp.sum(jnp.sin(ys) * weights) + sum(jnp.sum(jnp.cos(c))
                                                    for c in jax.tree.leaves(carry))
    return loss


#: Every way a cell calls `recurrent`: one tap (rnn, lstm with a gate off,
#: gru reset after), a tap feeding another (gru, mut1, mut2), three (mut3);
#: each with one of two settings of `scan`. tests/test_gradients.py checks
#: every cell against finite differences.
IN_LOOP = dict(hoist=False, lengths=(5, 2, 0), reverse=True)
HOISTED = dict(hoist=True, unroll=2)
CASES = [("rnn", IN_LOOP), ("lstm-o", HOISTED), ("gru", IN_LOOP), ("gru-reset-after", HOISTED),
         ("mut1", HOISTED), ("mut2", IN_LOOP), ("mut3", HOISTED), ("lstm", IN_LOOP)]


@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{','.join(k)}" for n, k in CASES])
def test_equals_autodiff_of_the_loop(name, kw):
    cell, params, xs, carry0, weights = _problem(name)
    loss = _loss(cell, weights, **kw)
    grads = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)
    in_loop = _loss(cell, weights, weight_grads="in_loop", **kw)
    expected = jax.grad(in_loop, argnums=(0, 1, 2))(params, xs, carry0)
    _assert_trees_close(grads, expected)


def _assert_trees_close(got, expected, rtol=1e-5, atol=1e-6):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["lstm", "gru", "mut3"])
def test_in_loop_prepare_matches_finite_differences(name):
    """`hoist=False` and two batch axes, in float64 (test_gradients.py covers
    the hoisted default at small batches)."""
    with jax.enable_x64(True):
        cell, params, xs, carry0, weights = _problem(name, jnp.float64, batch=(2, 1))
        loss = _loss(cell, weights, hoist=False)
        flat, unravel = ravel_pytree((params, xs, carry0))
        f = lambda v: loss(*unravel(v))
        exact = jax.jit(jax.grad(f))(flat)
        numeric = jax.jit(lambda v: finite_difference_grad(f, v))(flat)
        np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-8)


def _loop_matmuls(fn, *args) -> int:
    """Matmuls inside loops of `fn`'s compiled program (a fresh trace each call)."""
    return loop_matmuls(jax.jit(lambda *a: fn(*a)).lower(*args).compile().as_text() or "")


def test_weight_gradient_leaves_the_backward_loop():
    """lstm, hoisted: the forward loop multiplies by W_h, the backward loop
    by W_hᵀ only; autodiff of the loop adds the in-loop `h_tᵀ da_t`."""
    cell, params, xs, carry0, weights = _problem("lstm")
    for weight_grads, matmuls in (("after_loop", 2), ("in_loop", 3)):
        loss = _loss(cell, weights, hoist=True, weight_grads=weight_grads)
        grad = jax.grad(loss, argnums=(0, 1, 2))
        assert _loop_matmuls(grad, params, xs, carry0) == matmuls, weight_grads


@pytest.mark.parametrize("combinator", ["layer", "stack", "bidirectional"])
def test_combinators_pass_weight_grads_to_scan(combinator):
    """Two lstm layers (or directions), hoisted: 2 matmuls in loops each
    with the weight gradients after the loop, 3 with them in it."""
    cell, _, xs, _, _ = _problem("lstm")
    hoisted = recurrax.layer(cell, hoist=True)

    def build(weight_grads):
        if combinator == "layer":
            return recurrax.stack([recurrax.layer(cell, hoist=True, weight_grads=weight_grads),
                                   hoisted])
        if combinator == "stack":  # its cells get the option, a given Seq keeps its own
            return recurrax.stack([cell, hoisted], weight_grads=weight_grads)
        return recurrax.bidirectional(cell, weight_grads=weight_grads)

    counts = {}
    for weight_grads in ("after_loop", "in_loop"):
        seq = build(weight_grads)
        params = seq.init(jax.random.key(0), xs.shape[-1])
        loss = lambda p, x, seq=seq: jnp.sum(jnp.sin(seq.apply(p, x)[1]))
        counts[weight_grads] = _loop_matmuls(jax.grad(loss, argnums=(0, 1)), params, xs)
    in_loop_layers = 2 if combinator == "bidirectional" else 1
    assert counts == {"after_loop": 4, "in_loop": 4 + in_loop_layers}


def test_weight_grads_is_validated():
    cell, params, xs, _, _ = _problem("rnn")
    builders = {
        "scan": lambda w: recurrax.scan(cell, params, xs, weight_grads=w),
        "layer": lambda w: recurrax.layer(cell, weight_grads=w),
        "stack": lambda w: recurrax.stack([cell], weight_grads=w),
        "bidirectional": lambda w: recurrax.bidirectional(cell, weight_grads=w),
    }
    for where, make in builders.items():
        with pytest.raises(ValueError, match=rf"{where}: weight_grads must be one of "
                                             r"'after_loop', 'in_loop', got 'in-loop'"):
            make("in-loop")


def _as64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64), tree)


#: Forward mode in the default run on the LSTM; the other cells (both loop
#: forms, every step shape) are marked slow.
FORWARD_CASES = [pytest.param(n, k, id=f"{n}-{','.join(k)}",
                              marks=() if n == "lstm" else
                              pytest.mark.slow) for n, k in CASES]


@pytest.mark.parametrize("name, kw", FORWARD_CASES)
def test_forward_mode_through_jit_after_reverse_mode(name, kw):
    """`jax.jvp` and `jax.jacfwd` through a jitted `scan` whose jit cache
    entry `jax.grad` made first: the tangents equal the in-loop derivative's
    and central differences in float64."""
    cell, params, xs, carry0, weights = _problem(name)
    kw = _options(kw)
    f = jax.jit(lambda p, x, c: recurrax.scan(cell, p, x, c, **kw))
    loss = jax.jit(_loss(cell, weights, **kw))
    primals = (params, xs, carry0)
    jax.block_until_ready(jax.grad(lambda *a: jnp.sum(f(*a)[1]), argnums=(0, 1, 2))(*primals))
    jax.block_until_ready(jax.grad(loss, argnums=(0, 1, 2))(*primals))

    directions = jax.tree.map(
        lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), primals)
    _, tangent = jax.jvp(f, primals, directions)
    g = lambda p, x, c: recurrax.scan(cell, p, x, c, weight_grads="in_loop", **kw)
    _, expected = jax.jvp(g, primals, directions)
    _assert_trees_close(tangent, expected)
    with jax.enable_x64(True):
        p64, d64 = _as64(primals), _as64(directions)
        g64 = lambda eps: g(*jax.tree.map(lambda a, d: a + eps * d, p64, d64))
        numeric = jax.tree.map(lambda a, b: (a - b) / 2e-6, g64(1e-6), g64(-1e-6))
    _assert_trees_close(tangent, numeric, rtol=1e-4, atol=1e-5)

    jacobian = jax.jacfwd(loss, argnums=(0, 1, 2))(*primals)
    _assert_trees_close(jacobian, jax.grad(loss, argnums=(0, 1, 2))(*primals))


def test_second_derivatives_equal_the_in_loop_ones():
    """The Hessian of the loss times a direction, forward over reverse
    (`jax.jvp` of `jax.grad`) and reverse over reverse (`jax.grad` of the
    gradient's inner product with the direction): with the weight gradients
    after the loop, both equal the in-loop ones."""
    cell, params, xs, carry0, weights = _problem("gru")
    direction = jax.tree.map(jnp.ones_like, params)

    def hvps(weight_grads):
        grad = jax.grad(_loss(cell, weights, weight_grads=weight_grads))
        forward = jax.jvp(lambda p: grad(p, xs, carry0), (params,), (direction,))[1]
        along = lambda p: sum(jnp.vdot(g, d) for g, d in zip(
            jax.tree.leaves(grad(p, xs, carry0)), jax.tree.leaves(direction), strict=True))
        return forward, jax.grad(along)(params)

    _assert_trees_close(hvps("after_loop"), hvps("in_loop"), rtol=1e-4, atol=1e-5)


def _minimal_gated_unit(hidden_size: int) -> recurrax.Cell:
    """A user-written cell: h' = (1 − f) ⊙ h + f ⊙ tanh(x W_xc + (f ⊙ h) U_c + b_c),
    f = σ(x W_xf + h U_f + b_f), its two recurrent matmuls marked with
    `recurrax.cells.recurrent_matmul`."""
    H = hidden_size

    def init(key, input_size):
        k = jax.random.split(key, 4)
        return {"W_xf": jax.random.normal(k[0], (input_size, H)) / 2,
                "W_xc": jax.random.normal(k[1], (input_size, H)) / 2,
                "U_f": jax.random.normal(k[2], (H, H)) / 2,
                "U_c": jax.random.normal(k[3], (H, H)) / 2,
                "b_f": jnp.full((H,), 0.1), "b_c": jnp.full((H,), -0.1)}

    def prepare(params, xs):
        return jnp.concatenate([xs @ params["W_xf"] + params["b_f"],
                                xs @ params["W_xc"] + params["b_c"]], axis=-1)

    def step(params, h, px):
        px_f, px_c = jnp.split(px, 2, axis=-1)
        f = jax.nn.sigmoid(px_f + recurrax.cells.recurrent_matmul(params, h, ["U_f"]))
        c = jnp.tanh(px_c + recurrax.cells.recurrent_matmul(params, f * h, ["U_c"]))
        h = (1 - f) * h + f * c
        return h, h

    initial_carry = lambda batch_shape=(), dtype=jnp.float32: jnp.zeros((*batch_shape, H), dtype)
    return recurrax.Cell(init, initial_carry, prepare, step, H)


def test_user_cell_with_recurrent_matmul_gets_weight_gradients_after_the_loop():
    cell = _minimal_gated_unit(H)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (T, B, 2))
    weights = jax.random.normal(jax.random.key(2), (T, B, H))
    carry0 = jnp.full((B, H), 0.3)

    def grads(weight_grads):
        loss = _loss(cell, weights, hoist=True, weight_grads=weight_grads)
        grad = jax.grad(loss, argnums=(0, 1, 2))
        return grad(params, xs, carry0), _loop_matmuls(grad, params, xs, carry0)

    (after, after_count), (in_loop, in_loop_count) = grads("after_loop"), grads("in_loop")
    _assert_trees_close(after, in_loop)
    # forward: h U_f, (f h) U_c; backward: their transposes by U, and in loop also dU_f, dU_c
    assert (after_count, in_loop_count) == (4, 6)


def test_marked_weights_must_be_top_level_params():
    """A cell that keeps its marked weights in a nested dict is refused by
    name, rather than failing inside its derivative."""
    base = _minimal_gated_unit(H)
    nested = base._replace(
        init=lambda key, d: {"cell": base.init(key, d)},
        prepare=lambda params, xs: base.prepare(params["cell"], xs),
        step=lambda params, h, px: base.step(params["cell"], h, px))
    params = nested.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"\['U_c', 'U_f'\] are not keys of the params"):
        recurrax.scan(nested, params, jnp.zeros((T, B, 2)))


def test_vmapped_grads_equal_one_at_a_time():
    """Per-member grads of a vmapped scan (a population) equal the members'
    grads computed alone."""
    cell, params, xs, carry0, weights = _problem("mut1")
    scale = jnp.array([0.5, 1.0, 1.5])
    members = jax.tree.map(lambda a: a * scale.reshape((3,) + (1,) * a.ndim), params)
    grad = jax.grad(_loss(cell, weights), argnums=0)
    together = jax.vmap(grad, in_axes=(0, None, None))(members, xs, carry0)
    for k in range(3):
        alone = grad(jax.tree.map(lambda a, k=k: a[k], members), xs, carry0)
        for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[k], b, rtol=1e-5, atol=1e-6)


def test_cell_without_marked_matmuls_runs_the_plain_loop():
    """A cell written by hand (`h @ W` directly) differentiates as before."""
    base = recurrax.cells.rnn(H)

    def step(params, h, px):
        h = jnp.tanh(px + h @ params["W_hh"])
        return h, h

    cell = base._replace(step=step)
    _, params, xs, carry0, weights = _problem("rnn")
    loss = _loss(cell, weights)
    grads = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)
    expected = jax.grad(_loss(base, weights), argnums=(0, 1, 2))(params, xs, carry0)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_transformation_inside_the_step_is_left_alone():
    """A step wrapped in `jax.checkpoint` (a policy that keeps the matmuls)
    traces its matmuls one level down: they are differentiated in the loop,
    and the gradients stay right."""
    cell, params, xs, carry0, weights = _problem("lstm")
    policy = jax.checkpoint_policies.dots_saveable
    wrapped = cell._replace(step=jax.checkpoint(cell.step, policy=policy))
    grads = jax.grad(_loss(wrapped, weights), argnums=(0, 1, 2))(params, xs, carry0)
    expected = jax.grad(_loss(cell, weights), argnums=(0, 1, 2))(params, xs, carry0)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
