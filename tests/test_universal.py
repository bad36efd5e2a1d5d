"""The universal cell computes what `graph.compile` computes, for the paper's
cells, for mutated ones and for one with Linear(s, ·) maps: outputs,
gradients, and a few SGD steps; its init adds s·I to those maps' matrices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recurrax.scan import scan
from recurrax.search import graph as G
from recurrax.search import mutations, universal
from recurrax.search.baselines import GRAPHS

H, T, B = 6, 5, 3


def _named_params(g, key):
    """The compiled cell's params, with non-zero biases (zeros would hide a bias mixup)."""
    cell = G.compile(g, H)
    params = cell.init(key, H)
    return cell, {k: v + 0.3 * jax.random.normal(jax.random.fold_in(key, i), v.shape)
                  if k.startswith("b_") else v for i, (k, v) in enumerate(sorted(params.items()))}


def _losses(g, key):
    """(loss of the compiled cell, loss of the universal cell) as functions of
    the compiled cell's named params, on one random sequence."""
    xs = jax.random.normal(jax.random.fold_in(key, 99), (T, B, H))
    compiled, named = _named_params(g, key)
    cell = universal.cell(H, g)

    def compiled_loss(p):
        return jnp.sum(jnp.sin(scan(compiled, p, xs, compiled.initial_carry((B,)))[1]))

    def universal_loss(p):
        _, ys = scan(cell, universal.params_from(g, p), xs, cell.initial_carry((B,)))
        return jnp.sum(jnp.sin(ys))

    return compiled_loss, universal_loss, named


def _children(n):
    rng = np.random.default_rng(7)
    out = []
    while len(out) < n:
        parent = GRAPHS[("lstm", "gru")[len(out) % 2]]
        child, _ = mutations.mutate(parent, rng)
        if universal.fits(child):
            out.append(child)
    return out


def _linear_lstm() -> G.Graph:
    """An LSTM with the four Linear(s, ·) maps: g's tanh and i's sigmoid made
    Linear(0.9) and Linear(1.1) (step slots), Linear(0) between x and W_xi and
    Linear(1) after f's input term (prepare slots)."""
    N, lstm = G.Node, GRAPHS["lstm"]
    return lstm._replace(nodes={**lstm.nodes, "g": N("lin0.9", ("g_pre",), "W_lin1"),
                                "i": N("lin1.1", ("i_pre",), "W_lin2"),
                                "x0": N("lin0", ("x",), "W_lin3"),
                                "i_x": N("linear", ("x0",), "W_xi"),
                                "f_lin": N("lin1", ("f_xb",), "W_lin4"),
                                "f_pre": N("add", ("f_lin", "f_h"))})


# Each case compiles for 6 to 9 s: the rest of the paper's cells and the mutated
# children run with `-m slow` (the suite is kept under 10 minutes).
_QUICK = ("lstm", "child1", "linear_lstm")  # a memory cell, a mutated GRU, Linear(s) maps
CASES = [pytest.param(name, g, id=name, marks=() if name in _QUICK else pytest.mark.slow)
         for name, g in [*GRAPHS.items(), *((f"child{i}", g)
                                              for i, g in enumerate(_children(4))),
                         ("linear_lstm", _linear_lstm())]]


@pytest.mark.parametrize("name,g", CASES)
def test_matches_the_compiled_cell_in_value_and_gradient(name, g):
    compiled_loss, universal_loss, named = _losses(g, jax.random.PRNGKey(len(name)))
    lc, gc = jax.jit(jax.value_and_grad(compiled_loss))(named)
    lu, gu = jax.jit(jax.value_and_grad(universal_loss))(named)
    np.testing.assert_allclose(lu, lc, rtol=1e-5, atol=1e-5)
    for k in named:
        np.testing.assert_allclose(gu[k], gc[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_sgd_steps_follow_the_compiled_cell():
    """Ten SGD steps on the universal cell's own params land where ten steps
    on the compiled cell's land (mapped back through `params_from`)."""
    g = GRAPHS["mut1"]
    compiled_loss, _, named = _losses(g, jax.random.PRNGKey(3))
    xs = jax.random.normal(jax.random.PRNGKey(4), (T, B, H))
    cell = universal.cell(H, g)
    up = universal.params_from(g, named)
    weights = {k: v for k, v in up.items() if k != "program"}

    def loss_u(w):
        return jnp.sum(jnp.sin(scan(cell, {**w, "program": up["program"]}, xs,
                                    cell.initial_carry((B,)))[1]))

    def loss_c(p):
        c = G.compile(g, H)
        return jnp.sum(jnp.sin(scan(c, p, xs, c.initial_carry((B,)))[1]))

    sgd = lambda loss: jax.jit(lambda p: jax.tree.map(
        lambda w, d: w - 0.1 * d, p, jax.grad(loss)(p)))
    step_c, step_u = sgd(loss_c), sgd(loss_u)
    for _ in range(10):
        named, weights = step_c(named), step_u(weights)
    again = universal.params_from(g, named)
    for k in weights:
        np.testing.assert_allclose(weights[k], again[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.slow
def test_unused_slots_get_no_gradient():
    g = GRAPHS["rnn"]
    cell = universal.cell(H, g)
    params = cell.init(jax.random.PRNGKey(0), H)
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, H))
    _, where = universal.encode(g)
    grads = jax.jit(jax.grad(lambda w: jnp.sum(scan(cell, {**w, "program": params["program"]}, xs,
                                            cell.initial_carry((B,)))[1] ** 2)))(
        {k: v for k, v in params.items() if k != "program"})
    used = {(w, i) for w, i in where.values()}
    for which in ("W_prepare", "W_step", "b"):
        for i in range(grads[which].shape[0]):
            if (which, i) not in used:
                assert not np.any(np.asarray(grads[which][i])), (which, i)


def test_a_population_of_programs_is_one_vmap():
    """vmap over (params, program) pairs gives each member's own cell."""
    cell = universal.cell(H)
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, H))
    members = []
    for name in ("lstm", "gru", "mut2"):
        _, named = _named_params(GRAPHS[name], jax.random.PRNGKey(5))
        members.append(universal.params_from(GRAPHS[name], named))
    stacked = jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *members)
    run = jax.jit(lambda p: scan(cell, p, xs, cell.initial_carry((B,)))[1])
    ys = jax.vmap(run)(stacked)
    for m, p in enumerate(members):
        np.testing.assert_allclose(ys[m], run(p), rtol=1e-5, atol=1e-6)


def test_a_graph_that_does_not_fit_is_refused():
    tiny = universal.Layout(prepare=(("A", 4),) * 2, step=(("L", 4), ("E", 4), ("E", 4)))
    assert universal.fits(GRAPHS["rnn"], tiny) and not universal.fits(GRAPHS["lstm"], tiny)
    with pytest.raises(ValueError, match="finds no free slot"):
        universal.encode(GRAPHS["lstm"], tiny)
    with pytest.raises(ValueError, match="needs input_size == hidden_size"):
        universal.cell(H).init(jax.random.PRNGKey(0), H + 1)


def test_every_node_sits_after_its_arguments():
    for g in [*GRAPHS.values(), *_children(10)]:
        program, _ = universal.encode(g)
        groups = [(first, n) for part in ("prepare", "step")
                  for _, first, n in universal.Layout().groups(part)]
        group_of = {k: j for j, (first, n) in enumerate(groups) for k in range(first, first + n)}
        for k, (a, b) in enumerate(zip(program.a, program.b, strict=True)):
            for row in (a, b):
                if row >= universal.FIRST:
                    assert group_of[row - universal.FIRST] < group_of[k]


def test_a_linear_map_is_a_linear_slot_then_a_bias_slot():
    g = _linear_lstm()
    program, where = universal.encode(g)
    assert universal.fits(g) and set(where) == {
        p for n in G.order(g) for p in G.param_names(g.nodes[n])}
    matrix = {v: k for k, v in universal._matrix_index(universal.Layout()).items()}
    for W, s in [("W_lin1", 0.9), ("W_lin2", 1.1), ("W_lin3", 0.0), ("W_lin4", 1.0)]:
        k, bias = matrix[where[W]], where["b" + W[1:]][1]
        assert program.op[k] == universal.LINEAR and program.diag[k] == np.float32(s)
        assert program.op[bias] == universal.BIAS and program.a[bias] == universal.FIRST + k
    assert np.count_nonzero(program.diag) == 3


def test_init_adds_a_times_the_identity_to_each_linear_map():
    """The draws are the GRU's, key for key, but for `s·I` on each Linear(s)
    map's matrix; a population drawn from one program gets the same once its
    members' own offsets are added (`with_diagonal_offsets`, vmapped)."""
    g, key, eye = _linear_lstm(), jax.random.PRNGKey(0), np.eye(H)
    own, gru = universal.cell(H, g).init(key, H), universal.cell(H).init(key, H)
    _, where = universal.encode(g)
    want = {k: np.array(gru[k]) for k in ("W_prepare", "W_step", "b")}
    for W, s in [("W_lin1", 0.9), ("W_lin2", 1.1), ("W_lin3", 0.0), ("W_lin4", 1.0)]:
        which, i = where[W]
        want[which][i] += s * eye
    for k in want:
        np.testing.assert_allclose(own[k], want[k], atol=1e-6, err_msg=k)
    programs = [universal.encode(x)[0] for x in (g, GRAPHS["gru"], g)]
    stacked = jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]),
                           *[universal.with_program(gru, p) for p in programs])
    offset = jax.vmap(universal.with_diagonal_offsets)(stacked)
    for m, expected in enumerate([want, gru, want]):
        for k in ("W_prepare", "W_step", "b"):
            np.testing.assert_allclose(offset[k][m], expected[k], atol=1e-6, err_msg=(m, k))
