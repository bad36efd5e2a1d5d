"""The paper's baseline cells (Jozefowicz et al. 2015) as graphs
(`recurrax.search.graph`): the RNN, the LSTM, the GRU and MUT1-3, with the
param names of `recurrax.cells`, so `graph.compile(GRAPHS[name], H)` computes
what the hand-written cell computes with the same params
(tests/test_graph.py). The search starts from the LSTM and the GRU and
evaluates MUT1-3 beside them."""

from __future__ import annotations

from recurrax.search.graph import Graph, Node


def _gate(nodes: dict, gate: str, act: str, x_param: bool = True, h_source: str = "h") -> str:
    """Add `act((x W_x{gate} + b_{gate}) + source W_h{gate})` to `nodes`;
    `x_param=False` uses `x + b` (MUT2's reset gate)."""
    bias_of = f"{gate}_xb"
    if x_param:
        nodes[f"{gate}_x"] = Node("linear", ("x",), f"W_x{gate}")
        nodes[bias_of] = Node("bias", (f"{gate}_x",), f"b_{gate}")
    else:
        nodes[bias_of] = Node("bias", ("x",), f"b_{gate}")
    nodes[f"{gate}_h"] = Node("linear", (h_source,), f"W_h{gate}")
    nodes[f"{gate}_pre"] = Node("add", (bias_of, f"{gate}_h"))
    nodes[gate] = Node(act, (f"{gate}_pre",))
    return gate


def _interpolate(nodes: dict, candidate: str, z: str, candidate_first: bool) -> str:
    """`candidate ⊙ z + h ⊙ (1 − z)` (MUT1-3), or `z ⊙ h + (1 − z) ⊙ candidate` (GRU)."""
    nodes["1-z"] = Node("sub", ("1", z))
    if candidate_first:
        nodes["keep_new"] = Node("mul", (candidate, z))
        nodes["keep_old"] = Node("mul", ("h", "1-z"))
        nodes["h'"] = Node("add", ("keep_new", "keep_old"))
    else:
        nodes["keep_old"] = Node("mul", (z, "h"))
        nodes["keep_new"] = Node("mul", ("1-z", candidate))
        nodes["h'"] = Node("add", ("keep_old", "keep_new"))
    return "h'"


def _rnn() -> Graph:
    nodes: dict = {}
    nodes["h W"] = Node("linear", ("h",), "W_hh")
    nodes["pre"] = Node("add", (_x_term(nodes), "h W"))
    nodes["h'"] = Node("tanh", ("pre",))
    return Graph(nodes, "h'")


def _lstm() -> Graph:
    nodes: dict = {}
    i, f, g, o = (_gate(nodes, k, act) for k, act in
                  [("i", "sigmoid"), ("f", "sigmoid"), ("g", "tanh"), ("o", "sigmoid")])
    nodes["f*c"] = Node("mul", (f, "c"))
    nodes["i*g"] = Node("mul", (i, g))
    nodes["c'"] = Node("add", ("f*c", "i*g"))
    nodes["tanh c'"] = Node("tanh", ("c'",))
    nodes["h'"] = Node("mul", (o, "tanh c'"))
    return Graph(nodes, "h'", "c'")


def _candidate(nodes: dict, r: str, x_term: str) -> str:
    """`tanh(x_term + (r ⊙ h) W_hh)` in the order the cells add them."""
    nodes["r*h"] = Node("mul", (r, "h"))
    nodes["rh_W"] = Node("linear", ("r*h",), "W_hh")
    nodes["cand_pre"] = Node("add", (x_term, "rh_W"))
    nodes["cand"] = Node("tanh", ("cand_pre",))
    return "cand"


def _x_term(nodes: dict) -> str:
    nodes["xh"] = Node("linear", ("x",), "W_xh")
    nodes["xh_b"] = Node("bias", ("xh",), "b_h")
    return "xh_b"


def _gru() -> Graph:
    nodes: dict = {}
    r, z = _gate(nodes, "r", "sigmoid"), _gate(nodes, "z", "sigmoid")
    return Graph(nodes, _interpolate(nodes, _candidate(nodes, r, _x_term(nodes)), z, False))


def _mut1() -> Graph:
    nodes: dict = {"z_x": Node("linear", ("x",), "W_xz")}
    nodes["z_xb"] = Node("bias", ("z_x",), "b_z")
    nodes["z"] = Node("sigmoid", ("z_xb",))
    r = _gate(nodes, "r", "sigmoid")
    nodes["tanh x"] = Node("tanh", ("x",))
    nodes["tanh x + b"] = Node("bias", ("tanh x",), "b_h")
    return Graph(nodes, _interpolate(nodes, _candidate(nodes, r, "tanh x + b"), "z", True))


def _mut2() -> Graph:
    nodes: dict = {}
    z = _gate(nodes, "z", "sigmoid")
    r = _gate(nodes, "r", "sigmoid", x_param=False)
    return Graph(nodes, _interpolate(nodes, _candidate(nodes, r, _x_term(nodes)), z, True))


def _mut3() -> Graph:
    nodes: dict = {"tanh h": Node("tanh", ("h",))}
    z = _gate(nodes, "z", "sigmoid", h_source="tanh h")
    r = _gate(nodes, "r", "sigmoid")
    return Graph(nodes, _interpolate(nodes, _candidate(nodes, r, _x_term(nodes)), z, True))


#: The paper's baselines as graphs, with the param names of `recurrax.cells`.
GRAPHS = {"rnn": _rnn(), "lstm": _lstm(), "gru": _gru(), "mut1": _mut1(), "mut2": _mut2(),
          "mut3": _mut3()}
