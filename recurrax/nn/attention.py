r"""Attention over a sequence of vectors, in the library's positions-first layout.

A *memory* is `m[N, *batch, K]`: N positions (time steps of an encoder, or the
cells of an image's feature grid) of K features each, the layout of
`recurrax.scan`'s outputs. `lengths[*batch]` marks positions `i >= lengths[b]`
as padding: they get weight exactly 0. Every function returns the context and
the weights `α[N, *batch]` (each row sums to 1 over its valid positions).

- `feed_forward`: Raffel and Ellis (2015), "Feed-forward networks with attention
  can solve some long-term memory problems". Each position is scored on its
  own, with no query, by a learned function `a`:

      e_i = a(m_i),   α = softmax(e),   c = Σ_i α_i m_i

  Their experiments use one bounded layer, `a(m) = tanh(m w + b)`; here `a`
  is a one-hidden-layer network, `a(m) = v · tanh(m W + b)`, which with
  `attention_size=1` is theirs up to the learned scale v.

- `additive`: Bahdanau, Cho and Bengio (2015). A decoder state q (the query)
  scores every position:

      e_i = v · tanh(q W_q + m_i W_m + b),   α = softmax(e),   c = Σ_i α_i m_i

  `m_i W_m + b` does not depend on q, so `prepare` computes it once per
  sequence (like `Cell.prepare`) and each decoder step pays only `q W_q`.
- `soft_visual`: Xu et al. (2015), "Show, Attend and Tell", soft attention.
  The additive score over the L cells of a feature grid, with the paper's
  gating scalar β (its Section 4.2.1):

      β = σ(q W_β + b_β),   ẑ = β · Σ_i α_i a_i

  and `doubly_stochastic_penalty`, which asks every grid cell to receive, over
  the C words of a caption, a total attention close to 1 (its eq. 14):

      λ Σ_i (1 − Σ_t α_{t,i})²
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax._checks import check_lengths
from recurrax.masking import broadcast_mask, sequence_mask

_lecun = jax.nn.initializers.lecun_normal()


class Attention(NamedTuple):
    """Pure functions of one attention mechanism.

    Attributes:
      init: `(key, *sizes) -> params`.
      prepare: `(params, memory) -> keys`, the query-independent part, computed
        once per memory (the identity where there is none).
      apply: `(params, [query,] memory, *, lengths=None[, keys=None]) -> (context, α)`;
        the query and `keys` only where the mechanism has a query.
    """

    init: Callable
    prepare: Callable
    apply: Callable


def masked_softmax(scores: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    r"""`α[N, *batch] = softmax(scores)` over axis 0, with positions
    `i >= lengths[b]` given weight exactly 0:

        α_i = [i < ℓ] exp(e_i − max_j e_j) / Σ_{j < ℓ} exp(e_j − max_j e_j)

    A row of length 0 gets all-zero weights (and a zero context), not NaN.
    """
    if lengths is None:
        return jax.nn.softmax(scores, axis=0)
    lengths = jnp.asarray(check_lengths(lengths, scores.shape[1:], scores.shape[0]))
    valid = sequence_mask(lengths, scores.shape[0])
    shifted = scores - jnp.max(jnp.where(valid, scores, -jnp.inf), axis=0, keepdims=True)
    weights = jnp.where(valid, jnp.exp(jnp.where(valid, shifted, 0.0)), 0.0)
    total = jnp.sum(weights, axis=0, keepdims=True)
    return weights / jnp.where(total > 0, total, 1.0)


def _check_memory(memory: jax.Array, K: int, where: str) -> None:
    if memory.ndim < 2 or memory.shape[-1] != K:
        raise ValueError(f"{where}: memory must be [N, *batch, {K}] (positions first), got "
                         f"shape {tuple(memory.shape)}")


def _valid_only(a: jax.Array, lengths) -> jax.Array:
    """`a[N, *batch, ...]` with positions `i >= lengths[b]` set to 0, so that
    non-finite padding reaches neither the context nor any gradient (the
    weights there are 0, and 0·NaN would be NaN)."""
    if lengths is None:
        return a
    lengths = jnp.asarray(check_lengths(lengths, a.shape[1:-1], a.shape[0]))
    return jnp.where(broadcast_mask(sequence_mask(lengths, a.shape[0]), a), a, 0.0)


def _context(alpha: jax.Array, memory: jax.Array) -> jax.Array:
    """c = Σ_i α_i m_i over the positions axis."""
    return jnp.sum(broadcast_mask(alpha, memory) * memory, axis=0)


def _check_size(attention_size: int | None, where: str) -> None:
    if attention_size is not None and (not isinstance(attention_size, int) or attention_size < 1):
        raise ValueError(f"{where}: attention_size must be a positive int or None (the memory's "
                         f"width), got {attention_size!r}")


def feed_forward(attention_size: int | None = None) -> Attention:
    r"""Feed-forward attention (Raffel and Ellis, 2015), a query-free pooling:

        e_i = v · tanh(m_i W + b),   α = softmax(e),   c = Σ_i α_i m_i

    (`attention_size=1` is the paper's `e_i = tanh(m_i w + b)` up to the scale
    v; a wider hidden layer trained faster on the addition problem.)

    `init(key, K)` -> `{"W_a": (K, A), "b_a": (A,), "v_a": (A,)}` with
    `A = attention_size` (default K). `apply(params, memory[N, *batch, K], *,
    lengths=None)` -> `(c[*batch, K], α[N, *batch])`. `prepare` is the identity
    (with no query, nothing is worth computing ahead).
    """
    _check_size(attention_size, "feed_forward")

    def init(key: jax.Array, memory_size: int) -> dict:
        A = attention_size or memory_size
        k_w, k_v = jax.random.split(key)
        return {"W_a": _lecun(k_w, (memory_size, A)), "b_a": jnp.zeros((A,)),
                "v_a": _lecun(k_v, (A, 1))[:, 0]}

    def apply(params: dict, memory: jax.Array, *, lengths=None):
        _check_memory(memory, params["W_a"].shape[0], "feed_forward")
        memory = _valid_only(memory, lengths)
        scores = jnp.tanh(memory @ params["W_a"] + params["b_a"]) @ params["v_a"]
        alpha = masked_softmax(scores, lengths)
        return _context(alpha, memory), alpha

    return Attention(init, lambda params, memory: memory, apply)


def _additive_init(attention_size: int | None, gate: bool):
    def init(key: jax.Array, query_size: int, memory_size: int) -> dict:
        A = attention_size or memory_size
        k_q, k_m, k_v, k_g = jax.random.split(key, 4)
        params = {"W_q": _lecun(k_q, (query_size, A)), "W_m": _lecun(k_m, (memory_size, A)),
                  "b_a": jnp.zeros((A,)), "v_a": _lecun(k_v, (A, 1))[:, 0]}
        if gate:
            params |= {"W_beta": _lecun(k_g, (query_size, 1))[:, 0], "b_beta": jnp.zeros(())}
        return params

    return init


def _additive_apply(gate: bool, where: str):
    def prepare(params: dict, memory: jax.Array) -> jax.Array:
        _check_memory(memory, params["W_m"].shape[0], where)
        return memory @ params["W_m"] + params["b_a"]

    def apply(params: dict, query: jax.Array, memory: jax.Array, *, lengths=None, keys=None):
        if query.shape[-1:] != params["W_q"].shape[:1] or query.shape[:-1] != memory.shape[1:-1]:
            raise ValueError(
                f"{where}: query must be [*batch, {params['W_q'].shape[0]}] with the memory's "
                f"batch shape {tuple(memory.shape[1:-1])}, got {tuple(query.shape)}")
        memory = _valid_only(memory, lengths)
        keys = prepare(params, memory) if keys is None else _valid_only(keys, lengths)
        scores = jnp.tanh(keys + query @ params["W_q"]) @ params["v_a"]
        alpha = masked_softmax(scores, lengths)
        context = _context(alpha, memory)
        if gate:
            beta = jax.nn.sigmoid(query @ params["W_beta"] + params["b_beta"])
            context = beta[..., None] * context
        return context, alpha

    return prepare, apply


def additive(attention_size: int | None = None) -> Attention:
    r"""Additive attention (Bahdanau et al., 2015):

        e_i = v · tanh(q W_q + m_i W_m + b),   α = softmax(e),   c = Σ_i α_i m_i

    `init(key, Q, K)` -> `{"W_q": (Q, A), "W_m": (K, A), "b_a": (A,), "v_a": (A,)}`
    (A = `attention_size`, default K). `prepare(params, memory)` -> `m W_m + b`,
    to compute once per memory; `apply(params, q[*batch, Q], memory[N, *batch, K],
    *, lengths=None, keys=None)` -> `(c[*batch, K], α[N, *batch])`.
    """
    _check_size(attention_size, "additive")
    return Attention(_additive_init(attention_size, False), *_additive_apply(False, "additive"))


def soft_visual(attention_size: int | None = None, *, gate: bool = True) -> Attention:
    r"""Soft attention of Show, Attend and Tell (Xu et al., 2015) over the L
    cells `a_i` of a feature grid: the additive score above, and with `gate`
    the gating scalar of the paper's Section 4.2.1,

        β = σ(q W_β + b_β),   ẑ = β · Σ_i α_i a_i

    Params are `additive`'s plus `W_beta: (Q,)`, `b_beta: ()`. Use
    `grid_to_memory` to turn a `[*batch, h, w, K]` grid into the memory.
    """
    _check_size(attention_size, "soft_visual")
    return Attention(_additive_init(attention_size, gate), *_additive_apply(gate, "soft_visual"))


def grid_to_memory(grid: jax.Array) -> jax.Array:
    """A feature grid `[*batch, h, w, K]` as a memory `[h·w, *batch, K]`
    (row-major cells: position `i = row · w + col`)."""
    if grid.ndim < 3:
        raise ValueError(f"grid_to_memory: expected [*batch, h, w, K], got {tuple(grid.shape)}")
    cells = grid.reshape(grid.shape[:-3] + (-1, grid.shape[-1]))
    return jnp.moveaxis(cells, -2, 0)


def doubly_stochastic_penalty(alphas: jax.Array, steps: jax.Array | None = None,
                              weight: float = 1.0) -> jax.Array:
    r"""The doubly stochastic regulariser of Xu et al. (2015, eq. 14), per row:

        λ Σ_i (1 − Σ_t α_{t,i})²

    `alphas[C, L, *batch]` are the weights of C decoder steps over L cells;
    `steps[*batch]` (optional) counts each row's valid decoder steps (later
    ones are left out of the sum over t). Returns `[*batch]`; average it into
    the loss.
    """
    if alphas.ndim < 2:
        raise ValueError(f"doubly_stochastic_penalty: alphas must be [C, L, *batch], got "
                         f"{tuple(alphas.shape)}")
    if steps is not None:
        valid = sequence_mask(jnp.asarray(steps), alphas.shape[0])  # [C, *batch]
        alphas = jnp.where(jnp.expand_dims(valid, 1), alphas, 0.0)
    return weight * jnp.sum((1.0 - jnp.sum(alphas, axis=0)) ** 2, axis=0)
