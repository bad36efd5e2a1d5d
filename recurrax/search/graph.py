r"""Cells as small graphs, the search space of Jozefowicz et al. (2015).

A cell is a directed acyclic graph over the leaves `x` (the input), `h` (the
state), `c` (the memory, for cells that have one) and the constant `1`. Every
other node is `H` wide and is one of

    linear   a W         its own matrix W, named in the `W_*` convention
    bias     a + b       its own vector b (`b_*`)
    add, sub, mul        a + b, a − b, a ⊙ b
    tanh, sigmoid, relu, identity
    lin0, lin1, lin0.9, lin1.1    the paper's Linear(s, a): a W_k + b_k, its own
                                  W_k ∈ ℝ^{H×H} (its `param`) and b_k (`b_k`)

The paper lists Linear(0, ·), Linear(1, ·), Linear(0.9, ·) and Linear(1.1, ·)
among its mutation activations. The source this project has (a public study
note quoting the paper; `experiments/jozefowicz/paper.py` gives its
provenance) defines Linear(s, a) as a fresh learned linear map whose initial
matrix has `s` added to its diagonal, so Linear(1, ·) starts near the
identity and Linear(0, ·) is an ordinary linear layer. Here, in row-vector form,

    Linear(s, a) = a W_k + b_k,   at init   W_k = K + s·I,   b_k = B

where `K` is what the graph draws for any `linear` node's matrix (the
`kernel` initialiser for one reading `x` alone, the `recurrent` one
otherwise; `recurrax.initializers`) and `B` what it draws for a bias (zeros
by default). A Linear(s, ·) node names its matrix `W_k` (`Node.param`); its
bias is `b_k` (`param_names`). It reads an `H`-wide value like every
activation, so one reading `x` needs `D = H`. `lowered` writes it as a
`linear` node and a `bias` node, which is how `compile` and
`recurrax.search.universal` run it; `recurrax.search.equations` writes it
as `Linear(s; W_k, b_k)(a)`.

`Graph.h` names the node giving `h'` (also the output `y`), and `Graph.c` the
one giving `c'` for a cell with a memory. `compile(graph, H)` gives a `Cell`:
every node that depends on `x` alone is computed in `prepare` (its matmuls
fused into one), the rest in `step`, where the linear maps of one source are
one matmul marked `recurrent` (so `scan` takes their weight gradients out of
the loop). `canonical(graph)` is one key for the graphs that compute the same
cell up to names and argument order, and `to_json` / `from_json` round-trip a
graph. `recurrax.search.baselines.GRAPHS` holds the paper's baselines written
this way; they compute what `recurrax.cells` computes (tests/test_graph.py).
"""

from __future__ import annotations

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax import initializers as inits
from recurrax.cells import _common as C
from recurrax.protocols import Cell

LEAVES = ("x", "h", "c", "1")
#: The paper's Linear(s, ·) activations: op name -> s, the offset added to the
#: diagonal of the node's initial matrix (see the module docstring).
DIAGONAL_OFFSETS = {"lin0": 0.0, "lin1": 1.0, "lin0.9": 0.9, "lin1.1": 1.1}
#: The activations without params.
UNARY = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu,
         "identity": lambda a: a}
#: The activations the search swaps and inserts.
ACTIVATIONS = (*UNARY, *DIAGONAL_OFFSETS)
BINARY = {"add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply}
#: The ops with params of their own (`Node.param` names them).
PARAMETRIC = ("linear", "bias", *DIAGONAL_OFFSETS)


class Node(NamedTuple):
    op: str                  # a key of UNARY, BINARY or DIAGONAL_OFFSETS, or "linear" / "bias"
    args: tuple              # names of nodes or leaves
    param: str | None = None  # the matrix of "linear" and Linear(s), the vector of "bias"


class Graph(NamedTuple):
    nodes: dict              # name -> Node
    h: str                   # the node giving h' (and y)
    c: str | None = None     # the node giving c', for a cell with a memory


def param_names(node: Node) -> tuple[str, ...]:
    """The params `node` owns: `(W,)` of a `linear`, `(b,)` of a `bias`,
    `(W_k, b_k)` of a Linear(s, ·) whose `param` is `W_k`; `()` for the rest."""
    if not node.param:
        return ()
    if node.op in DIAGONAL_OFFSETS:
        return node.param, "b" + node.param[1:]
    return (node.param,)


def order(graph: Graph) -> list[str]:
    """The nodes `h'` (and `c'`) depend on, each after its arguments; raises
    `ValueError` on an unknown name, a wrong arity, a missing param name, a
    Linear(s, ·) matrix not named `W_*`, or a cycle."""
    done, visiting, out = set(), set(), []

    def visit(name: str):
        if name in LEAVES or name in done:
            return
        if name in visiting:
            raise ValueError(f"graph: a cycle through node {name!r}")
        if name not in graph.nodes:
            raise ValueError(f"graph: unknown node {name!r} (leaves are {LEAVES})")
        node = graph.nodes[name]
        arity = 2 if node.op in BINARY else 1 if node.op in UNARY or node.op in PARAMETRIC else None
        if arity is None:
            raise ValueError(f"graph: node {name!r} has unknown op {node.op!r}; expected one "
                             f"of {sorted([*UNARY, *BINARY, *PARAMETRIC])}")
        if len(node.args) != arity or (node.op in PARAMETRIC) != bool(node.param):
            raise ValueError(f"graph: node {name!r} ({node.op}) needs {arity} argument(s)"
                             f"{' and a param name' if node.op in PARAMETRIC else ''}, "
                             f"got {node}")
        if node.op in DIAGONAL_OFFSETS and not node.param.startswith("W_"):
            raise ValueError(f"graph: node {name!r} ({node.op}) needs a matrix named W_* "
                             f"(its bias is then b_*), got {node.param!r}")
        visiting.add(name)
        for arg in node.args:
            visit(arg)
        visiting.discard(name)
        done.add(name)
        out.append(name)

    for root in (graph.h, graph.c):
        if root is not None:
            visit(root)
    return out


def leaves_read(graph: Graph, names: list[str]) -> dict[str, set]:
    """node -> the leaves it depends on."""
    leaves: dict[str, set] = {leaf: {leaf} for leaf in LEAVES}
    for name in names:
        leaves[name] = set().union(*(leaves[a] for a in graph.nodes[name].args))
    return leaves


def lowered(graph: Graph) -> tuple[Graph, dict[str, float]]:
    """`(graph', offsets)`: the nodes `h'` (and `c'`) depend on, each
    Linear(s, ·) node `n = Linear(s; W_k, b_k)(a)` written as the two nodes
    `(n, "W") = a W_k` (`linear`) and `n = (n, "W") + b_k` (`bias`), which
    compute the same; `offsets[W_k] = s`, what init adds to the diagonal of
    `W_k`. The added names are tuples, so they clash with no node's name."""
    nodes, offsets = {}, {}
    for n in order(graph):
        node = graph.nodes[n]
        if node.op in DIAGONAL_OFFSETS:
            W, b = param_names(node)
            nodes[(n, "W")] = Node("linear", node.args, W)
            nodes[n] = Node("bias", ((n, "W"),), b)
            offsets[W] = DIAGONAL_OFFSETS[node.op]
        else:
            nodes[n] = node
    return graph._replace(nodes=nodes), offsets


def _with_diagonal_offsets(init, offsets: dict[str, float]):
    """`init` with `offsets[W]·I` added to each matrix `W` it draws."""

    def offset(key: jax.Array, input_size: int) -> dict[str, jax.Array]:
        params = init(key, input_size)
        return params | {W: params[W] + s * jnp.eye(*params[W].shape, dtype=params[W].dtype)
                         for W, s in offsets.items()}

    return offset


def compile(graph: Graph, hidden_size: int,
            initializers: inits.Initializers = inits.Initializers()) -> Cell:
    """A `Cell` computing `graph` with `H = hidden_size` (see the module docstring)."""
    H = C.check_hidden_size("graph", hidden_size)
    x_as_value = any("x" in graph.nodes[n].args and graph.nodes[n].op != "linear"
                     for n in order(graph))      # before lowering: Linear(s, x) needs D = H
    graph, offsets = lowered(graph)
    names = order(graph)
    reads = leaves_read(graph, names)
    if graph.c is None and "c" in set().union(*(reads[n] for n in names)):
        raise ValueError("graph: reads the memory c but names no node for c' (Graph.c)")
    timeless = [n for n in names if not reads[n] & {"h", "c"}]   # depend on x (and 1) only
    state = [n for n in names if n not in timeless]
    used = {a for n in state for a in graph.nodes[n].args} | {graph.h, graph.c}
    handed = [n for n in ["x", *timeless] if n in used]            # what prepare hands to step
    params_of = lambda op: [graph.nodes[n].param for n in names if graph.nodes[n].op == op]
    input_kernels = [graph.nodes[n].param for n in timeless
                     if graph.nodes[n].op == "linear" and graph.nodes[n].args == ("x",)]
    recurrent_kernels = [p for p in params_of("linear") if p not in input_kernels]
    init = _with_diagonal_offsets(C.param_initializer(
        "graph", H, input_kernels=input_kernels, recurrent_kernels=recurrent_kernels,
        biases=params_of("bias"), initializers=initializers,
        input_must_equal_hidden="x" in handed or x_as_value), offsets)

    def evaluate(params, values: dict, todo: list[str], matmul) -> dict:
        """Compute the nodes `todo` in order into `values`; the linear maps of
        one source among them are one `matmul(params, a, names)`."""
        for name in todo:
            node = graph.nodes[name]
            if node.op == "linear":
                if name not in values:
                    source = node.args[0]
                    group = [n for n in todo if graph.nodes[n].op == "linear"
                             and graph.nodes[n].args[0] == source]
                    outs = matmul(params, values[source], [graph.nodes[n].param for n in group])
                    values.update(zip(group, C.split(outs, len(group)), strict=True))
                continue
            a = [values[arg] for arg in node.args]
            if node.op == "bias":
                values[name] = a[0] + params[node.param]
            elif node.op in UNARY:
                values[name] = UNARY[node.op](a[0])
            else:
                values[name] = BINARY[node.op](*a)
        return values

    def prepare(params, xs):
        C.check_input_features("graph", xs, params[input_kernels[0]].shape[0]
                               if input_kernels else H)
        values = {"x": xs, "1": jnp.ones((H,), xs.dtype)}
        values = evaluate(params, values, timeless, C.project)
        return jnp.concatenate([jnp.broadcast_to(values[n], (*xs.shape[:-1], H))
                                for n in handed], axis=-1) if handed else xs[..., :0]

    def step(params, carry, px):
        c, h = carry if graph.c is not None else (None, carry)
        values = {"h": h, "c": c, "1": jnp.ones((H,), h.dtype)}
        if handed:
            values.update(zip(handed, C.split(px, len(handed)), strict=True))
        values = evaluate(params, values, state, C.recurrent_matmul)
        new_h = values[graph.h]
        if graph.c is None:
            return new_h, new_h
        return (values[graph.c], new_h), new_h

    def initial_carry(batch_shape: tuple = (), dtype=jnp.float32):
        zeros = jnp.zeros((*tuple(batch_shape), H), dtype)
        return zeros if graph.c is None else (zeros, zeros)

    return Cell(init, initial_carry, prepare, step, H)


def canonical(graph: Graph) -> str:
    """A key equal for graphs that differ only in node names, node order,
    param names, or the order of the arguments of `add` and `mul`, and
    different when one node is shared where the other graph has two alike
    (every `linear`, `bias` and Linear(s, ·) has its own params, so two alike
    nodes are two functions); the search uses it to train no cell twice. Each node is
    described by the expression below it and by how it is used above it,
    recursively; the key is the sorted list of those descriptions."""
    names = order(graph)
    down: dict[str, str] = {leaf: leaf for leaf in LEAVES}
    for n in names:
        node = graph.nodes[n]
        args = [down[a] for a in node.args]
        if node.op in ("add", "mul"):
            args.sort()
        down[n] = f"{node.op}({','.join(args)})"
    parents: dict[str, list[tuple[str, str]]] = {}
    for n in names:
        for k, a in enumerate(graph.nodes[n].args):
            slot = "" if graph.nodes[n].op in ("add", "mul") else str(k)
            parents.setdefault(a, []).append((n, slot))
    up: dict[str, str] = {}
    for n in reversed(names):
        marks = [f"out:{role}" for role, o in (("h", graph.h), ("c", graph.c)) if o == n]
        marks += [f"{up[p]}>{graph.nodes[p].op}{slot}" for p, slot in parents.get(n, [])]
        up[n] = "[" + "|".join(sorted(marks)) + "]"
    ident = {leaf: leaf for leaf in LEAVES} | {n: down[n] + up[n] for n in names}
    lines = []
    for n in names:
        node = graph.nodes[n]
        args = [ident[a] for a in node.args]
        if node.op in ("add", "mul"):
            args.sort()
        lines.append(f"{ident[n]}<-{','.join(args)}")
    return "\n".join(sorted(lines))


def to_json(graph: Graph) -> str:
    """The graph as JSON: `{"nodes": {name: [op, [args], param]}, "h": ..., "c": ...}`."""
    nodes = {n: [node.op, list(node.args), node.param] for n, node in graph.nodes.items()}
    return json.dumps({"nodes": nodes, "h": graph.h, "c": graph.c})


def from_json(text: str) -> Graph:
    """The inverse of `to_json` (the graph is checked as `compile` would)."""
    data = json.loads(text)
    graph = Graph({n: Node(op, tuple(args), param) for n, (op, args, param) in
                   data["nodes"].items()}, data["h"], data.get("c"))
    order(graph)
    return graph
