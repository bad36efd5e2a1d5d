r"""Beam search and greedy decoding in one compiled loop.

A decoder scores a sequence y_{1:t} (after a start token y_0) by its log-probability

    s(y_{1:t}) = Σ_{k=1..t} log p(y_k | y_{<k}),   p(· | y_{<k}) = softmax(z_k),

with `z_k` the logits of `step` after reading y_{k−1}. Beam search keeps the K
best prefixes of each batch row. At step t every beam extends by every token,

    s(y_{1:t−1}, v) = s(y_{1:t−1}) + log p(v | y_{1:t−1}),   K × V candidates,

and the K best candidates (`lax.top_k` over the flattened K·V axis) become the
new beams; each carries the recurrent state of its parent beam. A beam that has
emitted `end_token` is finished: its only extension is `end_token` again, at
log-probability 0, so its score and length stay fixed and the sequence is
padded with `end_token` up to `max_length`.

Candidates are ranked by the length-normalised score (Wu et al. 2016; fairseq
and Hugging Face use the same form)

    ŝ(y) = s(y) / |y|^α,   α = `length_penalty`,

where |y| counts the tokens up to and including the first `end_token`
(`max_length` for a beam that never ends). α = 0 ranks by the plain sum, which
favours short sequences; α = 1 ranks by the mean log-probability per token.
Running beams at step t all have length t, so α changes only how they compare
with finished beams. With K ≥ V^(max_length−1) nothing is ever pruned and the
result is the exact best sequence.

The loop is one `lax.scan` over `max_length` steps with the beams flattened
into the batch axis (B·K rows), so `jit` compiles it once and `step` sees an
ordinary batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Step = Callable[[Any, jax.Array], tuple[Any, jax.Array]]


class BeamSearchResult(NamedTuple):
    """The decoded sequences, best first.

    `sequences[B, max_length]`, `scores[B]` (s), `normalized_scores[B]` (ŝ) and
    `lengths[B]` (|y|) are the best beam of each row; `beams[B, K, max_length]`,
    `beam_scores[B, K]`, `beam_normalized_scores[B, K]` and `beam_lengths[B, K]`
    are all K beams, sorted by ŝ (so `beams[:, 0] == sequences`). Sequences
    exclude the start token and hold `end_token` after their first `end_token`.
    Beams that do not exist (K larger than the number of distinct sequences)
    score `-inf`.
    """

    sequences: jax.Array
    scores: jax.Array
    normalized_scores: jax.Array
    lengths: jax.Array
    beams: jax.Array
    beam_scores: jax.Array
    beam_normalized_scores: jax.Array
    beam_lengths: jax.Array


def _check(step: Step, carry: Any, start: jax.Array, end_token: int) -> None:
    if start.ndim != 1:
        raise ValueError(f"beam_search: start must be int[B], got shape {start.shape}")
    B = start.shape[0]
    for shape in map(jnp.shape, jax.tree.leaves(carry)):
        if not shape or shape[0] != B:
            raise ValueError(f"beam_search: every carry leaf needs the leading batch axis "
                             f"B={B} of start, got a leaf of shape {shape}")
    _, logits = jax.eval_shape(step, carry, start)
    if logits.ndim != 2 or logits.shape[0] != B:
        raise ValueError(f"beam_search: step must return logits[B={B}, V], got {logits.shape}")
    if not 0 <= end_token < logits.shape[1]:
        raise ValueError(f"beam_search: end_token must lie in [0, V={logits.shape[1]}), "
                         f"got {end_token}")


def beam_search(step: Step, carry: Any, start: jax.Array, *, beam_size: int, max_length: int,
                end_token: int, length_penalty: float = 0.0) -> BeamSearchResult:
    """Decode `max_length` tokens after `start[B]` with `beam_size` beams per row.

    `step(carry, tokens[N]) -> (carry, logits[N, V])` is one decoder step with
    the params bound by the caller (e.g. `lambda c, t: lm.step(params, c, t)`);
    it is called with N = B·beam_size. `carry` is any pytree whose leaves have
    the leading batch axis B (an image encoding, the RNN state, ...).
    `beam_size`, `max_length` and `end_token` are Python ints (static under
    `jit`); `length_penalty` (α) may be traced.
    """
    if beam_size < 1 or max_length < 1:
        raise ValueError(f"beam_search: beam_size and max_length must be >= 1, got "
                         f"{beam_size} and {max_length}")
    start = jnp.asarray(start)
    _check(step, carry, start, end_token)
    B, K = start.shape[0], beam_size

    def body(state, t):
        carry, tokens, seqs, scores, lengths, done = state
        carry, logits = step(carry, tokens)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        V = logp.shape[-1]
        logp = logp.reshape(B, K, V)
        only_end = jnp.where(jnp.arange(V) == end_token, 0.0, -jnp.inf)
        logp = jnp.where(done[..., None], only_end, logp)       # finished beams stay finished
        cand = scores[..., None] + logp                           # [B, K, V]
        cand_len = jnp.broadcast_to(jnp.where(done, lengths, t + 1)[..., None], cand.shape)
        ranked = cand / cand_len.astype(cand.dtype) ** length_penalty
        _, index = jax.lax.top_k(ranked.reshape(B, K * V), K)    # [B, K] into K·V
        parent, token = index // V, index % V

        def pick(x):  # gather along the beam axis by parent
            return jnp.take_along_axis(x, parent.reshape(parent.shape + (1,) * (x.ndim - 2)),
                                       axis=1)

        scores = jnp.take_along_axis(cand.reshape(B, K * V), index, axis=1)
        lengths = jnp.take_along_axis(cand_len.reshape(B, K * V), index, axis=1)
        done = pick(done) | (token == end_token)
        seqs = pick(seqs).at[:, :, t].set(token.astype(seqs.dtype))
        if K > 1:  # rows of the flat B·K batch: b·K + parent
            carry = jax.tree.map(
                lambda x: pick(x.reshape((B, K) + x.shape[1:])).reshape(x.shape), carry)
        return (carry, token.reshape(B * K).astype(tokens.dtype), seqs, scores, lengths,
                done), None

    init = (
        jax.tree.map(lambda x: jnp.repeat(x, K, axis=0), carry),
        jnp.repeat(start, K),
        jnp.full((B, K, max_length), end_token, start.dtype),
        jnp.broadcast_to(jnp.where(jnp.arange(K) == 0, 0.0, -jnp.inf), (B, K)),  # one live beam
        jnp.zeros((B, K), jnp.int32),
        jnp.zeros((B, K), bool),
    )
    (_, _, seqs, scores, lengths, _), _ = jax.lax.scan(body, init, jnp.arange(max_length))
    # top_k left the beams sorted by the ranking score of the last step, which is ŝ
    normalized = scores / lengths.astype(scores.dtype) ** length_penalty
    return BeamSearchResult(seqs[:, 0], scores[:, 0], normalized[:, 0], lengths[:, 0],
                            seqs, scores, normalized, lengths)


def greedy(step: Step, carry: Any, start: jax.Array, *, max_length: int,
           end_token: int) -> BeamSearchResult:
    """Greedy decoding: y_t = argmax_v p(v | y_{<t}) until `end_token`, i.e.
    `beam_search` with one beam (the beam gather is skipped). Same arguments
    and result; the `beam_*` fields have K = 1."""
    return beam_search(step, carry, start, beam_size=1, max_length=max_length,
                       end_token=end_token)
