"""Mutations of cell graphs, after Jozefowicz et al. (2015), "An Empirical
Exploration of Recurrent Network Architectures".

A child is made from a parent `graph.Graph` by one to three of

    swap_activation           an activation node gets another activation
    swap_elementwise          an add/sub/mul node gets another of the three
    insert_activation         a new activation node goes on an edge
    remove_node               a node with one argument and one user is bypassed
    replace_with_ancestor     an edge is rewired to an ancestor of its source
    replace_with_combination  an edge is rewired to op(u, v), op in add/sub/mul,
                              u and v ancestors of its source (or the source)

An edge runs from an argument (a node or a leaf) to the node that reads it, or
from the node giving h' (c') to that output. Each mutation is a function
`(graph, rng) -> Graph | None` (None where it has no site) that draws its site
uniformly and returns a new graph, possibly with dead nodes; new nodes are
named `m1`, `m2`, ... and are never `linear` or `bias`. A node given one of
the Linear(s, ·) activations (`graph.DIAGONAL_OFFSETS`), by a swap or an
insertion, is a fresh learned map `a W + b` with its own params: `W_lin1`
and `b_lin1` (the first `k` whose pair no node holds), or the ones it had if
it was a Linear(s', ·) already.
`mutate` applies them, prunes dead nodes and rejects children that are not
valid cells (`problems`), equal to the parent (`graph.canonical`) or too big.
"""

from __future__ import annotations

import numpy as np

from recurrax.search.graph import (
    ACTIVATIONS,
    BINARY,
    DIAGONAL_OFFSETS,
    LEAVES,
    Graph,
    Node,
    canonical,
    leaves_read,
    order,
    param_names,
)

MUTATIONS = ("swap_activation", "swap_elementwise", "insert_activation", "remove_node",
             "replace_with_ancestor", "replace_with_combination")
_PREFIX = {"linear": "W_", "bias": "b_"}


def problems(graph: Graph) -> list[str]:
    """Why `graph` is not a valid cell; [] if it is. Only the nodes h' and c'
    depend on are checked: a dead node is no problem."""
    if not graph.h:
        return ["no node gives h' (Graph.h is empty)"]
    try:
        names = order(graph)
    except ValueError as e:
        return [str(e)]
    out = [f"{role}' is the leaf {name!r}, not a node"
           for role, name in (("h", graph.h), ("c", graph.c)) if name in LEAVES]
    reads = leaves_read(graph, names)
    if "x" not in reads[graph.h]:
        out.append("h' ignores the input x")
    if not reads[graph.h] & {"h", "c"}:
        out.append("h' ignores the state (neither h nor c)")
    if graph.c is None and any("c" in graph.nodes[n].args for n in names):
        out.append("a node reads the memory c but no node gives c' (Graph.c is None)")
    owner: dict[str, str] = {}
    for n in names:
        node = graph.nodes[n]
        if node.op in _PREFIX and not node.param.startswith(_PREFIX[node.op]):
            out.append(f"node {n!r} ({node.op}) has param {node.param!r}, "
                       f"not named {_PREFIX[node.op]}*")
        for param in param_names(node):     # a Linear(s, ·)'s W_* is checked by order
            if param in owner:
                out.append(f"nodes {owner[param]!r} and {n!r} share the param {param!r}")
            owner.setdefault(param, n)
    return out


def prune(graph: Graph) -> Graph:
    """`graph` without the nodes h' and c' do not depend on."""
    live = set(order(graph))
    return graph._replace(nodes={n: node for n, node in graph.nodes.items() if n in live})


def _pick(rng: np.random.Generator, seq):
    """A uniformly drawn element of the sequence `seq`."""
    return seq[rng.integers(len(seq))]


def _fresh(graph: Graph) -> str:
    """The first of m1, m2, ... that no node has."""
    k = 1
    while f"m{k}" in graph.nodes:
        k += 1
    return f"m{k}"


def _fresh_param(graph: Graph) -> str:
    """The first of W_lin1, W_lin2, ... such that neither it nor its bias
    (b_lin1, ...) is a param of a node of `graph`, dead nodes included."""
    taken = {p for node in graph.nodes.values() if node.param for p in param_names(node)}
    k = 1
    while f"W_lin{k}" in taken or f"b_lin{k}" in taken:
        k += 1
    return f"W_lin{k}"


def _node(graph: Graph, op: str, args: tuple, param: str | None = None) -> Node:
    """A node `op(args)` for `graph`: a Linear(s, ·) owns params, `param`
    (those of the Linear(s', ·) it replaces) or fresh ones; any other
    activation, add, sub or mul none."""
    if op in DIAGONAL_OFFSETS:
        return Node(op, args, param or _fresh_param(graph))
    return Node(op, args)


def _edges(graph: Graph) -> list[tuple]:
    """The edges into live nodes as `(user, k)`, the k-th argument of node `user`,
    and into the outputs as `(None, "h")` and `(None, "c")`."""
    outputs = [(None, role) for role in ("h", "c") if getattr(graph, role) is not None]
    return outputs + [(n, k) for n in order(graph) for k in range(len(graph.nodes[n].args))]


def _source(graph: Graph, edge: tuple) -> str:
    user, k = edge
    return getattr(graph, k) if user is None else graph.nodes[user].args[k]


def _rewire(graph: Graph, edge: tuple, new: str, **added: Node) -> Graph:
    """A copy of `graph` with the nodes `added` and `edge` reading `new`."""
    user, k = edge
    nodes = {**graph.nodes, **added}
    if user is None:
        return graph._replace(nodes=nodes, **{k: new})
    args = list(nodes[user].args)
    args[k] = new
    nodes[user] = nodes[user]._replace(args=tuple(args))
    return graph._replace(nodes=nodes)


def _ancestors(graph: Graph, name: str) -> list[str]:
    """The nodes and leaves `name` depends on (not itself), in a fixed order."""
    found, todo = set(), [name]
    while todo:
        node = graph.nodes.get(todo.pop())
        for a in node.args if node else ():
            if a not in found:
                found.add(a)
                todo.append(a)
    return [a for a in (*LEAVES, *order(graph)) if a in found]


def _swap_op(graph: Graph, rng: np.random.Generator, ops) -> Graph | None:
    """Give a node whose op is one of `ops` another of them."""
    sites = [n for n in order(graph) if graph.nodes[n].op in ops]
    if not sites:
        return None
    name = _pick(rng, sites)
    old = graph.nodes[name]
    op = _pick(rng, [o for o in ops if o != old.op])
    return graph._replace(nodes={**graph.nodes, name: _node(graph, op, old.args, old.param)})


def swap_activation(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """Give an activation node (tanh, sigmoid, ..., Linear(s, ·)) another
    activation (a Linear(s, ·) with params, see the module docstring)."""
    return _swap_op(graph, rng, ACTIVATIONS)


def swap_elementwise(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """Give an add, sub or mul node another of the three ops."""
    return _swap_op(graph, rng, tuple(BINARY))


def insert_activation(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """Put a new node with a random activation on an edge: `user <- a` becomes
    `user <- act(a)`; on the edge into h' (c') the new node becomes the output.
    A Linear(s, ·) gets fresh params."""
    edge = _pick(rng, _edges(graph))
    new = _fresh(graph)
    act = _pick(rng, ACTIVATIONS)
    return _rewire(graph, edge, new, **{new: _node(graph, act, (_source(graph, edge),))})


def remove_node(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """Bypass and delete a node with one argument (an activation, a linear or a
    bias, whose params go with it) and one user, the output counting as one:
    its user reads its argument instead. An output node whose argument is a
    leaf is not removed (an output must be a node)."""
    edges = _edges(graph)
    users: dict[str, list] = {}
    for edge in edges:
        users.setdefault(_source(graph, edge), []).append(edge)
    sites = [n for n in order(graph) if len(graph.nodes[n].args) == 1 and len(users[n]) == 1
             and not (users[n][0][0] is None and graph.nodes[n].args[0] in LEAVES)]
    if not sites:
        return None
    name = _pick(rng, sites)
    child = _rewire(graph, users[name][0], graph.nodes[name].args[0])
    del child.nodes[name]      # _rewire copied the dict
    return child


def replace_with_ancestor(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """Make an edge `user <- a` read an ancestor of `a` (a node or a leaf `a`
    depends on) instead; what only `a` needed becomes dead. On the edge into
    h' (c') the ancestor must be a node."""
    sites = []
    for edge in _edges(graph):
        ancestors = _ancestors(graph, _source(graph, edge))
        if edge[0] is None:
            ancestors = [a for a in ancestors if a not in LEAVES]
        if ancestors:
            sites.append((edge, ancestors))
    if not sites:
        return None
    edge, ancestors = _pick(rng, sites)
    return _rewire(graph, edge, _pick(rng, ancestors))


def replace_with_combination(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """Make an edge `user <- a` read a new node `op(u, v)` instead, op one of
    add, sub, mul and u, v each drawn from `a` and its ancestors."""
    edge = _pick(rng, _edges(graph))
    source = _source(graph, edge)
    pool = [source, *_ancestors(graph, source)]
    new = _fresh(graph)
    args = (_pick(rng, pool), _pick(rng, pool))
    return _rewire(graph, edge, new, **{new: Node(_pick(rng, tuple(BINARY)), args)})


def _op(node: Node) -> str:
    """`node`'s op, and its params if it is a Linear(s, ·): "lin0.9[W_lin1, b_lin1]"."""
    return node.op + (f"[{', '.join(param_names(node))}]" if node.op in DIAGONAL_OFFSETS else "")


def _describe(before: Graph, after: Graph) -> str:
    """What changed from `before` to `after`, e.g. "i sigmoid -> relu"."""
    show = lambda args: f"({', '.join(args)})"
    parts = [f"new {n} = {_op(node)}{show(node.args)}" for n, node in after.nodes.items()
             if n not in before.nodes]
    for n, node in after.nodes.items():
        old = before.nodes.get(n, node)     # a new node is described above
        if old.op != node.op:
            parts.append(f"{n} {_op(old)} -> {_op(node)}")
        elif old.args != node.args:
            parts.append(f"{n} reads {show(old.args)} -> {show(node.args)}")
    parts += [f"removed {n} ({node.op})" for n, node in before.nodes.items()
              if n not in after.nodes]
    parts += [f"{role}' is {getattr(after, role)} (was {getattr(before, role)})"
              for role in ("h", "c") if getattr(before, role) != getattr(after, role)]
    return "; ".join(parts)


_BY_NAME = {f.__name__: f for f in (swap_activation, swap_elementwise, insert_activation,
                                     remove_node, replace_with_ancestor, replace_with_combination)}


def _mutate_once(graph: Graph, rng: np.random.Generator) -> tuple[Graph, str] | None:
    """One mutation of a type drawn uniformly among those that apply (the first
    that applies in a random order), pruned and described; None if none applies."""
    for i in rng.permutation(len(MUTATIONS)):
        child = _BY_NAME[MUTATIONS[i]](graph, rng)
        if child is not None:
            pruned = prune(child)
            dead = len(child.nodes) - len(pruned.nodes)
            line = f"{MUTATIONS[i]}: {_describe(graph, child)}"
            return pruned, line + (f" (pruned {dead} dead node{'s' * (dead > 1)})" if dead else "")
    return None


def mutate(graph: Graph, rng: np.random.Generator, n: int | None = None,
           max_nodes: int | None = None, tries: int = 100) -> tuple[Graph, list[str]]:
    """A child of `graph` and what was done to make it, one line per mutation.

    Applies `n` mutations (by default 1, 2 or 3, drawn uniformly), each of a
    type drawn uniformly among those that apply, at a site drawn uniformly, and
    prunes dead nodes. A child with `problems`, the same `canonical` key as
    `graph` or more than `max_nodes` nodes is drawn again, up to `tries` times;
    then `ValueError`. The same `rng` state gives the same child."""
    key = canonical(graph)
    for _ in range(tries):
        child, done, count = prune(graph), [], int(rng.integers(1, 4)) if n is None else n
        while len(done) < count and (step := _mutate_once(child, rng)) is not None:
            child, line = step
            done.append(line)
        if (len(done) == count and not problems(child) and canonical(child) != key
                and (max_nodes is None or len(child.nodes) <= max_nodes)):
            return child, done
    raise ValueError(f"mutate: no valid child in {tries} tries (a valid child has no problems, "
                     f"a canonical key other than its parent's and at most {max_nodes} nodes)")
