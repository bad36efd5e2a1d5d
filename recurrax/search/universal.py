r"""The universal cell: any `recurrax.search.graph` cell, interpreted from arrays.

`graph.compile` turns one graph into one XLA program; a search that compiles
every candidate runs at the compiler's speed. Here a graph is data instead: a
`Program` of op codes and operand rows,

    op[k] ∈ OPS,   a[k], b[k]: rows read by slot k,   out_h, out_c: rows of h', c',
    diag[k]: what init adds to the diagonal of slot k's W

and one compiled cell runs whichever graph its `params["program"]` holds, so a
`vmap` over programs trains a population of different architectures at once.

Every value is a row of one buffer `R[r] ∈ ℝ^{batch×H}`:

    R[0] = x   R[1] = h   R[2] = c   R[3] = 1   R[4] = 0   R[5 + k] = slot k

and slot k computes, with its own `b[k] ∈ ℝ^H` (and `W[w_k] ∈ ℝ^{H×H}` if it
can be linear),

    R[5+k] = R[a_k] W[w_k]         (linear)      R[a_k] + b[k]      (bias)
             R[a_k] ∘ R[b_k]       (∘ ∈ +, −, ⊙) f(R[a_k])          (f an activation)

A slot computes every op it may hold and `lax.select_n` keeps the one `op[k]`
names: the price of one program for all graphs. The `Layout` groups the
slots, each group computed at once: the `prepare` groups hold the nodes that
read no state (x-only, as `graph.compile` hoists them) and run in `prepare`
over the whole sequence, any op each; the `step` groups run every time step,
"L" groups a linear map (one batched matmul) and "E" groups any other op.
`encode` places a graph's nodes in order, each in the first group of its kind
after its arguments' groups with a free slot, or says that it does not fit. A
Linear(s, ·) node (`recurrax.search.graph`) is placed as `graph.lowered` writes it,
a linear slot then a bias slot, with `diag = s` on the linear slot. The
input must be `H` wide (an embedding of size `H`, as in the paper's
search). The carry is `(c, h)` for every graph; a cell without a memory
writes `c' = R[4] = 0`.

The backward pass through the slots is written by hand (`_run_bwd`): each
operand's cotangent is added to one row of a cotangent buffer, where JAX's own
transpose of the row reads would add a whole buffer per read (2.5 times
slower, measured). Unused slots compute 0 and their params get zero gradients,
so a member's update touches only its own graph's params. Every `W` is drawn
orthogonal (entries of variance 1/H, like both of the library's kernel
initialisers at D = H), every `b` zeros: all graphs start alike, but for the
`diag[k]·I` that `with_diagonal_offsets` adds to the W of each Linear(s, ·)
node (a population trained from one draw adds its members' own).
"""

from __future__ import annotations

import collections
import functools
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from recurrax.cells import _common as C
from recurrax.protocols import Cell
from recurrax.search import graph as G
from recurrax.search.baselines import GRAPHS

X, H_ROW, C_ROW, ONE, ZERO = range(5)
FIRST = 5  # the row of slot 0
#: The ops a slot may hold, in the order of their codes (a Linear(s, ·) node is
#: a linear slot and a bias slot).
OPS = ("linear", "bias", *G.BINARY, *G.UNARY)
LINEAR, BIAS = OPS.index("linear"), OPS.index("bias")


class Layout(NamedTuple):
    """The slots of a program, in groups computed at once: `prepare` groups
    run once per sequence, `step` groups every time step. A group is
    `(kind, size)`: "A" any op, "L" a linear map, "E" any other op."""

    prepare: tuple = (("A", 4), ("A", 4), ("A", 2), ("A", 2))
    step: tuple = ((("L", 4),) + (("E", 4),) * 3 + (("L", 2),) + (("E", 3),) * 2
                   + (("E", 2),) * 5)

    def groups(self, part: str) -> list[tuple[str, int, int]]:
        """`[(kind, first slot, size)]` of `part` ("prepare" or "step"); the
        step's slots follow the prepare's."""
        out, first = [], 0 if part == "prepare" else sum(n for _, n in self.prepare)
        for kind, n in (self.prepare if part == "prepare" else self.step):
            out.append((kind, first, n))
            first += n
        return out

    @property
    def slots(self) -> int:
        return sum(n for _, n in (*self.prepare, *self.step))


class Program(NamedTuple):
    """A graph as int32 arrays over the layout's N slots: `op[N]`, `a[N]`,
    `b[N]`, `out_h`, `out_c`, and the float32 `diag[N]` (see the module
    docstring)."""

    op: np.ndarray
    a: np.ndarray
    b: np.ndarray
    out_h: np.ndarray
    out_c: np.ndarray
    diag: np.ndarray


def _matrix_index(layout: Layout) -> dict[int, tuple[str, int]]:
    """slot -> ("W_prepare" or "W_step", index) for the slots that may be linear."""
    out = {}
    for part in ("prepare", "step"):
        able = [k for kind, first, n in layout.groups(part) if kind in "AL"
                for k in range(first, first + n)]
        out |= {k: (f"W_{part}", i) for i, k in enumerate(able)}
    return out


def encode(graph: G.Graph, layout: Layout = Layout()) -> tuple[Program, dict[str, tuple]]:
    """`(program, param_slot)`: the graph as a `Program`, and where each of its
    params lives, `("W_prepare" | "W_step" | "b", index)`. Each node goes to
    the first group of its kind after its arguments' groups with a free slot;
    raises `ValueError` when the graph does not fit the layout. A
    Linear(s, ·) node is its `graph.lowered` pair of slots."""
    graph, offsets = G.lowered(graph)
    names = G.order(graph)
    reads = G.leaves_read(graph, names)
    group_of, slot = {}, {}
    groups = [(part, g) for part in ("prepare", "step") for g in layout.groups(part)]
    used = [0] * len(groups)
    for n in names:
        node = graph.nodes[n]
        part = "step" if reads[n] & {"h", "c"} else "prepare"
        kinds = "A" if part == "prepare" else "L" if node.op == "linear" else "E"
        after = max((group_of[a] for a in node.args if a in group_of), default=-1)
        j = next((j for j, (p, (kind, _, size)) in enumerate(groups) if j > after and p == part
                  and kind in kinds and used[j] < size), None)
        if j is None:
            raise ValueError(f"universal: node {n!r} ({node.op}) finds no free slot in the "
                             f"layout's {part} groups {getattr(layout, part)} after its "
                             f"arguments'")
        group_of[n], slot[n] = j, groups[j][1][1] + used[j]
        used[j] += 1
    row = {"x": X, "h": H_ROW, "c": C_ROW, "1": ONE} | {n: FIRST + k for n, k in slot.items()}
    N, matrix = layout.slots, _matrix_index(layout)
    op = np.full(N, OPS.index("identity"), np.int32)
    a = np.full(N, ZERO, np.int32)
    b = np.full(N, ZERO, np.int32)
    diag = np.zeros(N, np.float32)
    param_slot = {}
    for n, k in slot.items():
        node = graph.nodes[n]
        op[k], a[k], b[k] = OPS.index(node.op), row[node.args[0]], row[node.args[-1]]
        if node.param:
            param_slot[node.param] = matrix[k] if node.op == "linear" else ("b", k)
            diag[k] = offsets.get(node.param, 0.0)
    out_c = ZERO if graph.c is None else row[graph.c]
    return (Program(op, a, b, np.asarray(row[graph.h], np.int32), np.asarray(out_c, np.int32),
                    diag), param_slot)


def fits(graph: G.Graph, layout: Layout = Layout()) -> bool:
    """Whether `encode(graph, layout)` succeeds."""
    try:
        encode(graph, layout)
    except ValueError:
        return False
    return True


def _shapes(layout: Layout, H: int) -> dict[str, tuple]:
    counts = collections.Counter(w for w, _ in _matrix_index(layout).values())
    return {"W_prepare": (counts["W_prepare"], H, H), "W_step": (counts["W_step"], H, H),
            "b": (layout.slots, H)}


def params_from(graph: G.Graph, named: dict, layout: Layout = Layout()) -> dict:
    """The universal cell's params computing what `graph.compile(graph, H)`
    computes with the params `named` (its `W_*` `(H, H)` and `b_*` `(H,)`);
    unused entries are zeros. Differentiable in `named`."""
    program, param_slot = encode(graph, layout)
    H = next(iter(named.values())).shape[-1]
    arrays = {k: jnp.zeros(shape) for k, shape in _shapes(layout, H).items()}
    for name, (which, i) in param_slot.items():
        arrays[which] = arrays[which].at[i].set(named[name])
    return {**arrays, "program": program}


def with_program(params: dict, program: Program) -> dict:
    """The cell's params running `program` instead of theirs."""
    return {**params, "program": program}


def with_diagonal_offsets(params: dict, layout: Layout = Layout()) -> dict:
    """`params` with `diag[k]·I` added to the `W` of every slot k of
    `params["program"]`: a Linear(s, ·) node's matrix starts at its random
    draw plus `s·I` (`cell`'s `init` does this; a population drawn from
    one program adds each member's own, `vmap`ped)."""
    diag, out, matrix = params["program"].diag, dict(params), _matrix_index(layout)
    for part in ("W_prepare", "W_step"):
        slots = np.array([k for k, (p, _) in matrix.items() if p == part], int)
        W = params[part]
        out[part] = W + (jnp.asarray(diag, W.dtype)[slots, None, None]
                         * jnp.eye(W.shape[-1], dtype=W.dtype))
    return out


Plan = tuple  # ((kind, first slot, size, first matrix or -1), ...): static


def _group_value(kind: str, op, a, b, W, bias):
    """What one group of `kind` computes from its operands `a, b [n, ..., H]`."""
    matmul = (lambda: jnp.einsum("n...h,nhk->n...k", a, W))
    if kind == "L":
        return matmul()
    cases = {"linear": matmul() if kind == "A" else a, "bias": a + _expand(bias, a)}
    cases |= {name: f(a, b) for name, f in G.BINARY.items()}
    cases |= {name: f(a) for name, f in G.UNARY.items()}
    return lax.select_n(jnp.broadcast_to(_expand(op, a), a.shape), *(cases[o] for o in OPS))


def _group_grads(kind: str, op, g, a, b, y, W):
    """`(∂a, ∂b)`: the cotangents of one group's operands given `g = ∂y`."""
    zero = jnp.zeros_like(g)
    back = (lambda: jnp.einsum("n...k,nhk->n...h", g, W))
    if kind == "L":
        return back(), zero
    cases = {"linear": (back() if kind == "A" else g, zero), "bias": (g, zero),
             "add": (g, g), "sub": (g, -g), "mul": (g * b, g * a),
             "tanh": (g * (1 - y * y), zero), "sigmoid": (g * y * (1 - y), zero),
             "relu": (jnp.where(a > 0, g, 0), zero), "identity": (g, zero)}
    which = jnp.broadcast_to(_expand(op, g), g.shape)
    return tuple(lax.select_n(which, *(cases[o][i] for o in OPS)) for i in (0, 1))


def _expand(v, like):
    """`v[n, ...]` with axes added to broadcast against `like[n, ..., H]`."""
    return v.reshape(v.shape[:1] + (1,) * (like.ndim - v.ndim) + v.shape[1:])


def _forward(prog: Program, W, bias, rows: jax.Array, plan: Plan) -> jax.Array:
    """Compute the groups of `plan` into the buffer `rows[R, ..., H]`; each row
    is written once, before any slot reads it."""
    for kind, k, n, w in plan:
        a, b = rows[prog.a[k:k + n]], rows[prog.b[k:k + n]]
        y = _group_value(kind, prog.op[k:k + n], a, b, W[w:w + n] if w >= 0 else None,
                         bias[k:k + n])
        rows = rows.at[FIRST + k:FIRST + k + n].set(y)
    return rows


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _run(prog: Program, W, bias, rows: jax.Array, plan: Plan) -> jax.Array:
    return _forward(prog, W, bias, rows, plan)


def _run_fwd(prog, W, bias, rows, plan):
    out = _forward(prog, W, bias, rows, plan)
    return out, (prog, W, out)


def _run_bwd(plan, res, g):
    """Backward through the groups in reverse: the cotangent buffer `g` gains
    each slot's operand cotangents at their rows (a scatter-add)."""
    prog, W, rows = res
    dW, dbias = jnp.zeros_like(W), jnp.zeros((rows.shape[0] - FIRST, W.shape[-1]), W.dtype)
    for kind, k, n, w in reversed(plan):
        gk, y = g[FIRST + k:FIRST + k + n], rows[FIRST + k:FIRST + k + n]
        op, a, b = prog.op[k:k + n], rows[prog.a[k:k + n]], rows[prog.b[k:k + n]]
        da, db = _group_grads(kind, op, gk, a, b, y, W[w:w + n] if w >= 0 else None)
        if w >= 0:
            outer = jnp.einsum("n...h,n...k->nhk", a, gk)
            if kind == "A":
                outer = jnp.where(_expand(op == LINEAR, outer), outer, 0)
            dW = dW.at[w:w + n].set(outer)
        if kind != "L":
            sums = jnp.sum(gk, axis=tuple(range(1, gk.ndim - 1)))
            dbias = dbias.at[k:k + n].set(jnp.where(_expand(op == BIAS, sums), sums, 0))
        g = g.at[FIRST + k:FIRST + k + n].set(0)
        g = g.at[prog.a[k:k + n]].add(da).at[prog.b[k:k + n]].add(db)
    return None, dW, dbias, g


_run.defvjp(_run_fwd, _run_bwd)


def cell(hidden_size: int, graph: G.Graph | None = None, layout: Layout = Layout()) -> Cell:
    """The universal `Cell`. `init(key, H)` gives `{"W_prepare", "W_step", "b",
    "program"}` with the program of `graph` (default: the GRU) and its
    Linear(s, ·) offsets on the diagonals (`with_diagonal_offsets`);
    `with_program` runs another (a population: one program per member,
    `vmap`ped). `params_from` gives the params equal to a compiled graph's."""
    H = C.check_hidden_size("universal", hidden_size)
    matrix = _matrix_index(layout)
    plans = {part: tuple((kind, k, n, matrix[k][1] if k in matrix else -1)
                         for kind, k, n in layout.groups(part)) for part in ("prepare", "step")}
    n_prepare = sum(n for _, n in layout.prepare)
    program, _ = encode(GRAPHS["gru"] if graph is None else graph, layout)
    shapes = _shapes(layout, H)

    def init(key: jax.Array, input_size: int) -> dict:
        C.check_input_size("universal", input_size)
        C.check_input_equals_hidden("universal", input_size, H)
        keys = jax.random.split(key, 2)
        # One QR at a time (lax.map, not vmap): a batched LAPACK call can deadlock XLA CPU
        # on jaxlib 0.10.0-0.10.2 (see recurrax.train.population); same values.
        draw = lambda k, n: lax.map(
            lambda kk: jax.nn.initializers.orthogonal()(kk, (H, H)), jax.random.split(k, n))
        return with_diagonal_offsets({"W_prepare": draw(keys[0], shapes["W_prepare"][0]),
                                      "W_step": draw(keys[1], shapes["W_step"][0]),
                                      "b": jnp.zeros(shapes["b"]), "program": program}, layout)

    def run(params, part, x, h, c, prepared) -> jax.Array:
        fixed = [x, h, c, jnp.ones_like(x), jnp.zeros_like(x), *prepared]
        pad = jnp.zeros((FIRST + layout.slots - len(fixed), *x.shape), x.dtype)
        rows = jnp.concatenate([jnp.stack(fixed), pad])
        # cast: functools.partial(jax.custom_vjp, ...) hides _run's return type from pyright
        return cast(jax.Array, _run(params["program"], params[f"W_{part}"], params["b"], rows,
                                    plans[part]))

    def prepare(params, xs):
        C.check_input_features("universal", xs, H)
        zeros = jnp.zeros_like(xs)
        rows = run(params, "prepare", xs, zeros, zeros, [])
        return jnp.concatenate([xs, *rows[FIRST:FIRST + n_prepare]], axis=-1)

    def step(params, carry, px):
        c, h = carry
        x, *prepared = C.split(px, 1 + n_prepare)
        rows = run(params, "step", x, h, c, prepared)
        prog = params["program"]
        new_h = rows[prog.out_h]
        return (rows[prog.out_c], new_h), new_h

    def initial_carry(batch_shape: tuple = (), dtype=jnp.float32):
        zeros = jnp.zeros((*tuple(batch_shape), H), dtype)
        return zeros, zeros

    return Cell(init, initial_carry, prepare, step, H)
