"""`recurrax.graph`: the paper's baselines written as graphs compute what the
hand-written cells compute (outputs and gradients, hoisted or not), with the
same params; malformed graphs are refused with a message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax import graph as G

T, B, H = 5, 3, 4


@pytest.mark.parametrize("hoist", [True, False])
@pytest.mark.parametrize("name", sorted(G.GRAPHS))
def test_graph_equals_the_cell(name, hoist):
    D = H if name in ("mut1", "mut2") else 3
    cell = recurrax.cells.get(name, H)
    compiled = G.compile(G.GRAPHS[name], H)
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
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nodes, message", [
    ({"a": G.Node("add", ("a", "h"))}, "cycle"),
    ({"a": G.Node("exp", ("h",))}, "unknown op"),
    ({"a": G.Node("linear", ("h",))}, "param name"),
    ({"a": G.Node("mul", ("h",))}, "2 argument"),
    ({"a": G.Node("tanh", ("y",))}, "unknown node"),
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
    rename = lambda a: a if a in G.LEAVES else prefix + a  # noqa: E731
    items = list(g.nodes.items())[::-1 if reverse else 1]
    nodes = {}
    for name, node in items:
        args = tuple(map(rename, node.args))
        if node.op in ("add", "mul"):
            args = args[::-1]
        nodes[rename(name)] = G.Node(node.op, args, node.param and node.param + "_2")
    return G.Graph(nodes, rename(g.h), g.c and rename(g.c))


@pytest.mark.parametrize("name", sorted(G.GRAPHS))
def test_canonical_form_ignores_names_and_order(name):
    g = G.GRAPHS[name]
    assert G.canonical(_renamed(g, "n_", reverse=True)) == G.canonical(g)
    assert G.from_json(G.to_json(g)) == g


def test_canonical_forms_tell_the_cells_apart():
    keys = {G.canonical(g) for g in G.GRAPHS.values()}
    assert len(keys) == len(G.GRAPHS)
    # a GRU whose candidate reuses the update gate z instead of r: one gate shared
    gru = G.GRAPHS["gru"]
    shared = G.Graph({**gru.nodes, "r*h": G.Node("mul", ("z", "h"))}, gru.h)
    assert G.canonical(shared) != G.canonical(gru)


def test_equations_read_like_the_paper():
    assert G.equations(G.GRAPHS["mut1"]) == [
        "r = σ(x W_xr + b_r + h W_hr)",
        "z = σ(x W_xz + b_z)",
        "h' = tanh(tanh(x) + b_h + (r ⊙ h) W_hh) ⊙ z + h ⊙ (1 − z)",
    ]
    assert G.equations(G.GRAPHS["lstm"])[-2:] == [
        "c' = f ⊙ c + i ⊙ tanh(x W_xg + b_g + h W_hg)", "h' = o ⊙ tanh(c')"]
    assert G.equations(G.GRAPHS["rnn"], latex=True) == [
        r"h^{\prime} = \tanh(x W_{xh} + b_{h} + h W_{hh})"]
