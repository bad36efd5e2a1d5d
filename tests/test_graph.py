"""`recurrax.search.graph`: the paper's baselines written as graphs compute what the
hand-written cells compute (outputs and gradients, hoisted or not), with the
same params; malformed graphs are refused with a message; a Linear(s, ·) node
is `a W + b` with W starting at its kernel draw plus s·I (against NumPy and
finite differences)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import recurrax
from recurrax import initializers as inits
from recurrax.search import graph as G
from recurrax.search.baselines import GRAPHS
from recurrax.search.equations import equations
from tests.helpers import finite_difference_grad

T, B, H = 5, 3, 4


@pytest.mark.parametrize("hoist", [True, False])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_equals_the_cell(name, hoist):
    D = H if name in ("mut1", "mut2") else 3
    cell = recurrax.cells.get(name, H)
    compiled = G.compile(GRAPHS[name], H)
    params = jax.tree.map(lambda a: a + 0.1, cell.init(jax.random.key(0), D))
    own = compiled.init(jax.random.key(0), D)
    assert jax.tree.map(jnp.shape, own) == jax.tree.map(jnp.shape, params)
    xs = jax.random.normal(jax.random.key(1), (T, B, D))
    weights = jax.random.normal(jax.random.key(2), (T, B, H))

    def loss(c):
        return lambda p, x: jnp.sum(jnp.sin(recurrax.scan(c, p, x, hoist=hoist)[1]) * weights)

    np.testing.assert_allclose(recurrax.scan(compiled, params, xs, hoist=hoist)[1],
                               recurrax.scan(cell, params, xs, hoist=hoist)[1],
                               rtol=1e-6, atol=1e-6)
    got = jax.grad(loss(compiled), argnums=(0, 1))(params, xs)
    want = jax.grad(loss(cell), argnums=(0, 1))(params, xs)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nodes, message", [
    ({"a": G.Node("add", ("a", "h"))}, "cycle"),
    ({"a": G.Node("exp", ("h",))}, "unknown op"),
    ({"a": G.Node("linear", ("h",))}, "param name"),
    ({"a": G.Node("mul", ("h",))}, "2 argument"),
    ({"a": G.Node("tanh", ("y",))}, "unknown node"),
    ({"a": G.Node("lin0.9", ("h",))}, "param name"),
    ({"a": G.Node("lin1", ("h",), "U_a")}, "matrix named W_"),
])
def test_malformed_graphs_are_refused(nodes, message):
    with pytest.raises(ValueError, match=message):
        G.compile(G.Graph(nodes, "a"), H)


def test_memory_needs_an_output():
    with pytest.raises(ValueError, match="memory"):
        G.compile(G.Graph({"a": G.Node("add", ("h", "c"))}, "a"), H)


def _renamed(g: G.Graph, prefix: str, reverse: bool) -> G.Graph:
    """The same cell with every node renamed, params renamed, node order
    reversed (optionally) and the arguments of add/mul swapped."""
    rename = lambda a: a if a in G.LEAVES else prefix + a
    items = list(g.nodes.items())[::-1 if reverse else 1]
    nodes = {}
    for name, node in items:
        args = tuple(map(rename, node.args))
        if node.op in ("add", "mul"):
            args = args[::-1]
        nodes[rename(name)] = G.Node(node.op, args, node.param and node.param + "_2")
    return G.Graph(nodes, rename(g.h), g.c and rename(g.c))


def _linear_rnn(op_h: str = "lin0.9", op_x: str = "lin1.1") -> G.Graph:
    """`h' = tanh(x W_xh + b_h + Linear(s_h)(h) + Linear(s_x)(x))`, the two
    maps' params `W_lin1, b_lin1` (of h) and `W_lin2, b_lin2` (of x)."""
    N = G.Node
    return G.Graph({"xh": N("linear", ("x",), "W_xh"), "xh_b": N("bias", ("xh",), "b_h"),
                    "Lh": N(op_h, ("h",), "W_lin1"), "Lx": N(op_x, ("x",), "W_lin2"),
                    "s": N("add", ("xh_b", "Lh")), "pre": N("add", ("s", "Lx")),
                    "h'": N("tanh", ("pre",))}, "h'")


def _linear_rnn_numpy(p: dict, xs: np.ndarray | jax.Array, read_by_lx=lambda x: x) -> np.ndarray:
    """`_linear_rnn` from its definition, Linear(s, a) = a W + b, in NumPy
    (float64); `read_by_lx(x)` is what the second map reads."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    h, ys = np.zeros((xs.shape[1], H)), []
    for x in np.asarray(xs, np.float64):
        h = np.tanh(x @ p["W_xh"] + p["b_h"] + (h @ p["W_lin1"] + p["b_lin1"])
                    + (read_by_lx(x) @ p["W_lin2"] + p["b_lin2"]))
        ys.append(h)
    return np.stack(ys)


@pytest.mark.parametrize("hoist", [True, False])
def test_linear_a_is_a_learned_map(hoist):
    g = _linear_rnn()
    cell = G.compile(g, H)
    rng = np.random.default_rng(0)
    params = {k: 0.5 * rng.standard_normal(np.shape(v)).astype(np.float32)
              for k, v in cell.init(jax.random.key(0), H).items()}
    assert sorted(params) == ["W_lin1", "W_lin2", "W_xh", "b_h", "b_lin1", "b_lin2"]
    xs = rng.standard_normal((T, B, H)).astype(np.float32)
    np.testing.assert_allclose(recurrax.scan(cell, params, jnp.asarray(xs), hoist=hoist)[1],
                               _linear_rnn_numpy(params, xs), rtol=1e-5, atol=1e-5)


def _fixed(seed: int):
    """An initialiser that ignores its key: one fixed (non-symmetric) draw."""
    M = np.random.default_rng(seed).standard_normal((H, H))
    return lambda key, shape, dtype=jnp.float32: jnp.asarray(M[:shape[0], :shape[1]], dtype)


@pytest.mark.parametrize("op, a", [("lin0", 0.0), ("lin1", 1.0), ("lin0.9", 0.9),
                                   ("lin1.1", 1.1)])
def test_linear_a_starts_at_its_kernel_draw_plus_a_times_the_identity(op, a):
    assert G.DIAGONAL_OFFSETS[op] == a
    g, eye = _linear_rnn(op, op), np.eye(H)
    # the kernel initialisers of a linear node: recurrent for h's map, kernel for x's
    own = inits.Initializers(kernel=_fixed(1), recurrent=_fixed(2),
                             bias=lambda key, shape, dtype=jnp.float32: jnp.full(shape, 0.25))
    p = G.compile(g, H, own).init(jax.random.key(0), H)
    np.testing.assert_allclose(p["W_lin1"] - a * eye, _fixed(2)(None, (H, H)), atol=1e-6)
    np.testing.assert_allclose(p["W_lin2"] - a * eye, _fixed(1)(None, (H, H)), atol=1e-6)
    np.testing.assert_array_equal(p["b_lin1"], np.full(H, 0.25))
    # the default draws, key for key: Linear(0)'s, whose recurrent one is orthogonal
    p, p0 = (G.compile(gg, H).init(jax.random.key(3), H) for gg in (g, _linear_rnn("lin0", "lin0")))
    for name in ("W_lin1", "W_lin2"):
        np.testing.assert_allclose(p[name] - a * eye, p0[name], atol=1e-6)
    np.testing.assert_allclose(p0["W_lin1"] @ p0["W_lin1"].T, eye, atol=1e-5)
    np.testing.assert_array_equal(p["b_lin1"], np.zeros(H))
    with pytest.raises(ValueError, match="input_size == hidden_size"):
        G.compile(g, H).init(jax.random.key(0), H + 1)   # Linear(s, x) maps H wide to H wide


def test_linear_a_gradients_match_finite_differences():
    with jax.enable_x64(True):
        g = _linear_rnn()
        cell = G.compile(g, H)
        rng = np.random.default_rng(1)
        p = {k: jnp.asarray(0.5 * rng.standard_normal(np.shape(v)))
             for k, v in cell.init(jax.random.key(0), H).items()}
        xs = jnp.asarray(rng.standard_normal((T, B, H)))
        w = jnp.asarray(rng.standard_normal((T, B, H)))
        flat, unravel = ravel_pytree(p)

        def loss(flat):
            return jnp.sum(w * recurrax.scan(cell, unravel(flat), xs)[1])

        exact = jax.jit(jax.grad(loss))(flat)
        numeric = jax.jit(lambda v: finite_difference_grad(loss, v))(flat)
        np.testing.assert_allclose(np.asarray(exact), np.asarray(numeric), rtol=1e-6, atol=1e-8)
        grads = unravel(exact)
        for name in ("W_lin1", "b_lin1", "W_lin2", "b_lin2"):
            assert np.abs(np.asarray(grads[name])).max() > 1e-3, name


def test_linear_a_reads_the_constant_one():
    """`Linear(s)(1) = 1 W + b`: the column sums of W plus b, a learned vector."""
    g = G.Graph({**_linear_rnn().nodes, "Lx": G.Node("lin1", ("1",), "W_lin2")}, "h'")
    cell = G.compile(g, H)
    p = jax.tree.map(lambda v: v + 0.1, cell.init(jax.random.key(0), H))
    xs = jax.random.normal(jax.random.key(1), (T, B, H))
    np.testing.assert_allclose(recurrax.scan(cell, p, xs)[1],
                               _linear_rnn_numpy(p, xs, np.ones_like), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [*sorted(GRAPHS), "linear_rnn"])
def test_canonical_form_ignores_names_and_order(name):
    g = GRAPHS.get(name) or _linear_rnn()
    assert G.canonical(_renamed(g, "n_", reverse=True)) == G.canonical(g)
    assert G.from_json(G.to_json(g)) == g


def test_canonical_forms_tell_linear_maps_apart():
    """Linear(s) differs from Linear(s'), and two alike Linear(s) nodes (two
    maps, params of their own) from one shared."""
    g, N = _linear_rnn(), G.Node
    assert G.canonical(_linear_rnn("lin1.1", "lin0.9")) != G.canonical(g)
    two = G.Graph({**g.nodes, "Lx": N("lin0.9", ("h",), "W_lin2")}, "h'")
    shared = G.Graph({**g.nodes, "pre": N("add", ("s", "Lh"))}, "h'")
    assert len({G.canonical(two), G.canonical(shared), G.canonical(g)}) == 3


def test_canonical_forms_tell_the_cells_apart():
    keys = {G.canonical(g) for g in GRAPHS.values()}
    assert len(keys) == len(GRAPHS)
    # a GRU whose candidate reuses the update gate z instead of r: one gate shared
    gru = GRAPHS["gru"]
    shared = G.Graph({**gru.nodes, "r*h": G.Node("mul", ("z", "h"))}, gru.h)
    assert G.canonical(shared) != G.canonical(gru)


def test_equations_read_like_the_paper():
    assert equations(GRAPHS["mut1"]) == [
        "r = σ(x W_xr + b_r + h W_hr)",
        "z = σ(x W_xz + b_z)",
        "h' = tanh(tanh(x) + b_h + (r ⊙ h) W_hh) ⊙ z + h ⊙ (1 − z)",
    ]
    assert equations(GRAPHS["lstm"])[-2:] == [
        "c' = f ⊙ c + i ⊙ tanh(x W_xg + b_g + h W_hg)", "h' = o ⊙ tanh(c')"]
    assert equations(GRAPHS["rnn"], latex=True) == [
        r"h^{\prime} = \tanh(x W_{xh} + b_{h} + h W_{hh})"]
    assert equations(_linear_rnn()) == [
        "h' = tanh(x W_xh + b_h + Linear(0.9; W_lin1, b_lin1)(h) + Linear(1.1; W_lin2, b_lin2)(x))"]
    assert equations(_linear_rnn("lin0", "lin1"), latex=True) == [
        r"h^{\prime} = \tanh(x W_{xh} + b_{h} + \mathrm{Linear}(0; W_{lin1}, b_{lin1})(h) + "
        r"\mathrm{Linear}(1; W_{lin2}, b_{lin2})(x))"]
