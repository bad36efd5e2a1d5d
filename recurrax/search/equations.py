r"""A cell graph (`recurrax.search.graph`) written as the paper writes its
cells: one equation per output, per node used more than once and per sigmoid
gate, the rest inline, as text (`σ`, `⊙`, `W_hh`) or LaTeX (`\sigma`,
`\odot`, `W_{hh}`). For MUT1 (`recurrax.search.baselines.GRAPHS["mut1"]`):

    r = σ(x W_xr + b_r + h W_hr)
    z = σ(x W_xz + b_z)
    h' = tanh(tanh(x) + b_h + (r ⊙ h) W_hh) ⊙ z + h ⊙ (1 − z)
"""

from __future__ import annotations

from recurrax.search.graph import DIAGONAL_OFFSETS, LEAVES, Graph, order, param_names

_SYMBOLS = {
    "text": {"sigmoid": "σ({})", "tanh": "tanh({})", "relu": "relu({})", "mul": " ⊙ ",
             "sub": " − ", "add": " + ", "W": "{}", "b": "{}",
             "Linear": "Linear({}; {}, {})({})"},
    "latex": {"sigmoid": r"\sigma({})", "tanh": r"\tanh({})", "relu": r"\mathrm{{relu}}({})",
              "mul": r" \odot ", "sub": " - ", "add": " + ", "W": "W_{{{}}}", "b": "b_{{{}}}",
              "Linear": r"\mathrm{{Linear}}({}; {}, {})({})"},
}


def equations(graph: Graph, latex: bool = False) -> list[str]:
    r"""The cell as equations, one per output, per node used more than once and
    per sigmoid gate; the rest is written inline, e.g. MUT1's
    `h' = tanh(tanh(x) + b_h + (r ⊙ h) W_hh) ⊙ z + h ⊙ (1 − z)`, and a
    Linear(s, ·) node as `Linear(0.9; W_k, b_k)(a)`, i.e. `a W_k + b_k` with
    `W_k` initialised to its kernel draw plus `0.9·I`.
    `latex=True` writes LaTeX (`\sigma`, `\odot`, `W_{hh}`)."""
    sym = _SYMBOLS["latex" if latex else "text"]
    names = order(graph)
    uses: dict[str, int] = {}
    for n in names:
        for a in graph.nodes[n].args:
            uses[a] = uses.get(a, 0) + 1
    outputs = [o for o in (graph.c, graph.h) if o is not None]
    own_line = {n for n in names if n in outputs or uses.get(n, 0) > 1
                or graph.nodes[n].op == "sigmoid"}

    def label(n: str) -> str:
        if n in LEAVES or not latex:
            return n
        return n.replace("'", "^{\\prime}")

    def param(name: str, kind: str) -> str:
        return sym[kind].format(name[2:] if latex else name)

    def expr(n: str, top: bool = False) -> tuple[str, str]:
        """(text, precedence): "atom", "mul" or "sum"."""
        if n in LEAVES or (n in own_line and not top):
            return label(n), "atom"
        node = graph.nodes[n]
        a = [expr(arg) for arg in node.args]
        wrap = lambda t, needs: f"({t[0]})" if t[1] in needs else t[0]
        if node.op == "linear":
            return f"{wrap(a[0], ('mul', 'sum'))} {param(node.param, 'W')}", "mul"
        if node.op == "bias":
            return f"{a[0][0]} + {param(node.param, 'b')}", "sum"
        if node.op in ("add", "sub"):
            rhs = wrap(a[1], ("sum",)) if node.op == "sub" else a[1][0]
            return f"{a[0][0]}{sym[node.op]}{rhs}", "sum"
        if node.op == "mul":
            return f"{wrap(a[0], ('sum',))}{sym['mul']}{wrap(a[1], ('sum',))}", "mul"
        if node.op == "identity":
            return a[0]
        if node.op in DIAGONAL_OFFSETS:
            W, b = param_names(node)
            return sym["Linear"].format(node.op[3:], param(W, "W"), param(b, "b"), a[0][0]), "atom"
        return sym[node.op].format(a[0][0]), "atom"

    return [f"{label(n)} = {expr(n, top=True)[0]}" for n in names if n in own_line]

