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
