"""`recurrax.search.mutations`: each mutation of Jozefowicz et al. (2015) changes what
it says and nothing else, `problems` catches invalid cells, and `mutate` gives
valid, new, bounded children, the same for the same seed; a node made a
Linear(s, ·) gets params of its own."""

import collections
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recurrax.search import graph as G
from recurrax.search import mutations as M
from recurrax.search.baselines import GRAPHS

N = G.Node
RNN, LSTM, GRU = GRAPHS["rnn"], GRAPHS["lstm"], GRAPHS["gru"]
SEEDS = range(25)


def _runs(graph: G.Graph, H: int = 4):
    """`graph` compiles and one step of it gives finite numbers."""
    cell = G.compile(graph, H)
    params = cell.init(jax.random.key(0), H)
    px = cell.prepare(params, jnp.linspace(-1.0, 1.0, 2 * H).reshape(2, H))
    carry, y = cell.step(params, cell.initial_carry((2,)), px)
    assert y.shape == (2, H)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves((carry, y)))


def _ancestors(graph: G.Graph, name: str) -> set:
    node = graph.nodes.get(name)
    return set().union(*({a} | _ancestors(graph, a) for a in node.args)) if node else set()


def _edge_changes(parent: G.Graph, child: G.Graph) -> list[tuple]:
    """(reader, old argument, new argument) for every edge that changed, the
    outputs read as "out:h" and "out:c"; checks that no kept node changed otherwise."""
    changes = [(f"out:{r}", getattr(parent, r), getattr(child, r)) for r in ("h", "c")
               if getattr(parent, r) != getattr(child, r)]
    for n in parent.nodes.keys() & child.nodes.keys():
        p, c = parent.nodes[n], child.nodes[n]
        assert (p.op, p.param, len(p.args)) == (c.op, c.param, len(c.args)), n
        changes += [(n, a, b) for a, b in zip(p.args, c.args, strict=True) if a != b]
    return changes


def _params(graph: G.Graph) -> set:
    return {p for node in graph.nodes.values() for p in G.param_names(node)}


def _check_linear_params(parent: G.Graph, child: G.Graph, name: str):
    """Node `name` of `child` has params iff it is a Linear(s, ·): fresh ones
    (held by no node of `parent`) unless it was a Linear(s', ·) there."""
    node, old = child.nodes[name], parent.nodes.get(name)
    if node.op not in G.DIAGONAL_OFFSETS:
        assert node.param is None
    elif old is not None and old.op in G.DIAGONAL_OFFSETS:
        assert node.param == old.param
    else:
        W, b = G.param_names(node)
        assert W.startswith("W_lin") and b == "b_" + W[2:] and not {W, b} & _params(parent)


def _children(mutation: Callable[[G.Graph, np.random.Generator], G.Graph | None],
              parent: G.Graph) -> list[G.Graph]:
    """`mutation` applied to `parent` with seeds `SEEDS`, a child each; `parent`
    stays as it was."""
    before = G.to_json(parent)
    children = [mutation(parent, np.random.default_rng(seed)) for seed in SEEDS]
    assert G.to_json(parent) == before
    found = [child for child in children if child is not None]
    assert len(found) == len(children), "the mutation found no site"
    return found


@pytest.mark.parametrize("parent", [GRU, LSTM], ids=["gru", "lstm"])
@pytest.mark.parametrize("mutation, ops", [(M.swap_activation, G.ACTIVATIONS),
                                           (M.swap_elementwise, tuple(G.BINARY))])
def test_swaps_change_one_op(parent, mutation, ops):
    for k, child in enumerate(_children(mutation, parent)):
        assert (child.h, child.c) == (parent.h, parent.c)
        assert child.nodes.keys() == parent.nodes.keys()
        [name] = [n for n in parent.nodes if child.nodes[n] != parent.nodes[n]]
        old, new = parent.nodes[name], child.nodes[name]
        assert old.op in ops and new.op in ops and old.op != new.op
        assert new._replace(op=old.op, param=old.param) == old
        _check_linear_params(parent, child, name)
        if k < 2 or new.op in G.DIAGONAL_OFFSETS:
            _runs(child)


@pytest.mark.parametrize("parent", [GRU, LSTM], ids=["gru", "lstm"])
def test_insert_activation(parent):
    for k, child in enumerate(_children(M.insert_activation, parent)):
        [new] = child.nodes.keys() - parent.nodes.keys()
        assert parent.nodes.keys() <= child.nodes.keys() and new not in G.LEAVES
        assert child.nodes[new].op in G.ACTIVATIONS
        [(_, old, now)] = _edge_changes(parent, child)
        assert now == new and child.nodes[new].args == (old,)
        _check_linear_params(parent, child, new)
        if k < 2 or child.nodes[new].op in G.DIAGONAL_OFFSETS:
            _runs(child)


def test_insert_activation_can_feed_the_output():
    parent = G.Graph({"o": N("add", ("x", "h"))}, "o")
    children = _children(M.insert_activation, parent)
    assert {c.h for c in children} == {"o", "m1"}
    for child in children:
        assert M.problems(child) == []


@pytest.mark.parametrize("parent", [GRU, LSTM], ids=["gru", "lstm"])
def test_remove_node(parent):
    for k, child in enumerate(_children(M.remove_node, parent)):
        [gone] = parent.nodes.keys() - child.nodes.keys()
        assert child.nodes.keys() <= parent.nodes.keys()
        [arg] = parent.nodes[gone].args
        [(user, old, now)] = _edge_changes(parent, child)
        assert (old, now) == (gone, arg)
        readers = [n for n in parent.nodes for a in parent.nodes[n].args if a == gone]
        readers += [f"out:{r}" for r in ("h", "c") if getattr(parent, r) == gone]
        assert readers == [user]              # it had one user, which now reads its argument
        if k < 2:
            _runs(child)


def test_remove_node_at_the_output():
    rng = np.random.default_rng(0)
    parent = G.Graph({"s": N("add", ("x", "h")), "o": N("tanh", ("s",))}, "o")
    assert M.remove_node(parent, rng) == G.Graph({"s": N("add", ("x", "h"))}, "s")
    assert "o" in parent.nodes
    # the output's argument is a leaf, or the one-argument node has two users
    assert M.remove_node(G.Graph({"o": N("linear", ("h",), "W_hh")}, "o"), rng) is None
    shared = {"t": N("tanh", ("x",)), "s": N("add", ("t", "h")), "o": N("mul", ("t", "s"))}
    assert M.remove_node(G.Graph(shared, "o"), rng) is None
    # LSTM: tanh c' can go (h' then reads c'), but not c', which gives c' and feeds tanh c'
    children = _children(M.remove_node, LSTM)
    assert any(child.nodes["h'"].args == ("o", "c'") for child in children)
    assert all("c'" in child.nodes for child in children)


@pytest.mark.parametrize("parent", [GRU, LSTM], ids=["gru", "lstm"])
def test_replace_with_ancestor(parent):
    for k, child in enumerate(_children(M.replace_with_ancestor, parent)):
        assert child.nodes.keys() == parent.nodes.keys()   # dead nodes are left to mutate
        [(user, old, now)] = _edge_changes(parent, child)
        assert now in _ancestors(parent, old)
        if user.startswith("out:"):
            assert now not in G.LEAVES
        if k < 2:
            _runs(M.prune(child))


@pytest.mark.parametrize("parent", [GRU, LSTM], ids=["gru", "lstm"])
def test_replace_with_combination(parent):
    for k, child in enumerate(_children(M.replace_with_combination, parent)):
        [new] = child.nodes.keys() - parent.nodes.keys()
        assert parent.nodes.keys() <= child.nodes.keys()
        [(_, old, now)] = _edge_changes(parent, child)
        assert now == new and child.nodes[new].op in G.BINARY
        assert set(child.nodes[new].args) <= {old} | _ancestors(parent, old)
        if k < 2:
            _runs(M.prune(child))


def _with(graph: G.Graph, **nodes: G.Node) -> G.Graph:
    return graph._replace(nodes={**graph.nodes, **nodes})


@pytest.mark.parametrize("graph, message", [
    (_with(RNN, **{"h W": N("linear", ("pre",), "W_hh")}), "cycle"),
    (_with(RNN, pre=N("add", ("h", "h W"))), "ignores the input x"),
    (_with(RNN, **{"h W": N("linear", ("x",), "W_hh")}), "ignores the state"),
    (_with(RNN, **{"h W": N("linear", ("c",), "W_hh")}), "memory c"),
    (_with(GRU, z_h=N("linear", ("h",), "W_hr")), "share the param 'W_hr'"),
    (_with(RNN, **{"h W": N("linear", ("h",), "U_hh")}), "not named W_"),
    (_with(RNN, xh_b=N("bias", ("xh",), "W_h")), "not named b_"),
    (_with(RNN, pre=N("add", ("xh_b",))), "argument"),
    (_with(RNN, **{"h W": N("lin1", ("h",), "W_h")}), "share the param 'b_h'"),
    (_with(RNN, **{"h W": N("lin1", ("h",), "W_xh")}), "share the param 'W_xh'"),
    (_with(RNN, **{"h W": N("lin1", ("h",), "b_hh")}), "matrix named W_"),
    (RNN._replace(h="x"), "leaf"),
    (LSTM._replace(c="c"), "c' is the leaf"),
    (RNN._replace(h="nope"), "unknown node"),
])
def test_problems_catches(graph, message):
    assert any(message in p for p in M.problems(graph)), M.problems(graph)


def test_problems_passes_the_baselines():
    for graph in GRAPHS.values():
        assert M.problems(graph) == []
    # dead nodes are no problem, even one sharing a param; nor a c' that reads only x
    assert M.problems(_with(GRU, dead=N("linear", ("c",), "W_hh"))) == []
    assert M.problems(GRU._replace(c="xh_b")) == []


def test_prune_drops_dead_nodes():
    dead = _with(GRU, d1=N("tanh", ("h",)), d2=N("linear", ("d1",), "W_d"))
    assert M.prune(dead) == GRU and list(M.prune(dead).nodes) == list(GRU.nodes)
    assert "d2" in dead.nodes
    assert M.prune(GRU) == GRU


@pytest.mark.parametrize("parent", [GRU, LSTM], ids=["gru", "lstm"])
def test_mutate_gives_valid_new_children(parent):
    rng, before, key = np.random.default_rng(1), G.to_json(parent), G.canonical(parent)
    max_nodes = len(parent.nodes) + 3
    counts, kinds = collections.Counter(), collections.Counter()
    for _ in range(150):
        child, done = M.mutate(parent, rng, max_nodes=max_nodes)
        assert M.problems(child) == [] and G.canonical(child) != key
        assert len(child.nodes) <= max_nodes and M.prune(child) == child
        counts[len(done)] += 1
        kinds.update(line.split(":")[0] for line in done)
    assert G.to_json(parent) == before
    assert set(counts) == {1, 2, 3}
    assert set(kinds) == set(M.MUTATIONS)


def test_mutate_is_deterministic_and_counts():
    def run(seed):
        rng = np.random.default_rng(seed)
        return [(G.to_json(c), d) for c, d in (M.mutate(LSTM, rng) for _ in range(20))]
    assert run(7) == run(7) and run(7) != run(8)
    for n in (1, 2, 3):
        assert len(M.mutate(GRU, np.random.default_rng(n), n=n)[1]) == n
    child, done = M.mutate(GRU, np.random.default_rng(0), n=1)
    assert done[0].split(":")[0] in M.MUTATIONS and len(done[0]) < 300


def test_mutate_refuses_when_no_child_fits():
    with pytest.raises(ValueError, match="no valid child in 5 tries"):
        M.mutate(RNN, np.random.default_rng(0), max_nodes=1, tries=5)


def test_swapping_between_linear_maps_and_back():
    """Linear(s) -> Linear(s') keeps the node's params; -> tanh drops them."""
    parent = _with(RNN, **{"h'": N("lin0.9", ("pre",), "W_lin1")})
    assert M.problems(parent) == [] and _params(parent) >= {"W_lin1", "b_lin1"}
    ops = collections.Counter()
    for child in _children(M.swap_activation, parent):
        ops[child.nodes["h'"].op] += 1
        _check_linear_params(parent, child, "h'")
        assert M.problems(child) == []
    assert set(ops) == set(G.ACTIVATIONS) - {"lin0.9"}


def test_fresh_linear_params_avoid_every_name_held():
    """A param b_lin1 (even of a dead node) makes the next map W_lin2, b_lin2."""
    parent = _with(RNN, xh_b=N("bias", ("xh",), "b_lin1"), dead=N("lin0", ("h",), "W_lin3"))
    made = {c.nodes["m1"].param for c in _children(M.insert_activation, parent)
            if c.nodes["m1"].op in G.DIAGONAL_OFFSETS}
    assert made == {"W_lin2"}


def test_mutated_children_with_linear_maps_are_valid_and_run():
    rng, seen = np.random.default_rng(3), 0
    for k in range(150):
        parent = (GRU, LSTM)[k % 2]
        child, _ = M.mutate(parent, rng)
        maps = [n for n, node in child.nodes.items() if node.op in G.DIAGONAL_OFFSETS]
        if not maps:
            continue
        seen += 1
        assert M.problems(child) == []
        assert len(_params(child)) == sum(len(G.param_names(n)) for n in child.nodes.values())
        for name in maps:
            assert not set(G.param_names(child.nodes[name])) & _params(parent)
        if seen <= 3:
            _runs(child)
            params = G.compile(child, 4).init(jax.random.key(0), 4)
            assert set(params) == _params(child)
    assert seen >= 10
