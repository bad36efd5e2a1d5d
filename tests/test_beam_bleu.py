"""Beam search against brute-force enumeration of every sequence in NumPy, and
BLEU against NLTK and against values worked out by hand from the definitions."""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recurrax import models
from recurrax.metrics.bleu import bleu_stats, corpus_bleu, sentence_bleu
from recurrax.models.beam import beam_search, greedy

V, H, L, END = 4, 5, 4, 0


# ---------------------------------------------------------------------------
# A tiny second-order RNN decoder: h' = tanh(E[y] + h W), z = h' U + T[y_prev].
# The carry is a pytree {"h": float[N, H], "prev": int[N]}, so beam search must
# gather a float and an int leaf by parent beam.


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"E": rng.normal(size=(V, H)), "W": rng.normal(size=(H, H)) * 0.8,
            "U": rng.normal(size=(H, V)) * 1.5, "T": rng.normal(size=(V, V))}


def jax_step(params):
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)

    def step(carry, token):
        h = jnp.tanh(p["E"][token] + carry["h"] @ p["W"])
        return {"h": h, "prev": token}, h @ p["U"] + p["T"][carry["prev"]]

    return step


def np_logp(params, h0, prev0, start, ys):
    """log p(y_k | y_<k) of every token of `ys[N, T]` after `start`, float64."""
    N = len(ys)
    h, prev, tok, out = np.tile(h0, (N, 1)), np.full(N, prev0), np.full(N, start), []
    for k in range(ys.shape[1]):
        h = np.tanh(params["E"][tok] + h @ params["W"])
        z = h @ params["U"] + params["T"][prev]
        z = z - z.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        out.append(logp[np.arange(len(ys)), ys[:, k]])
        prev, tok = tok, ys[:, k]
    return np.stack(out, 1)


def np_score(params, h0, prev0, start, ys):
    """(Σ log p up to and including the first END, that length) for each row of ys."""
    ys = np.asarray(ys)
    ended = np.cumsum(ys == END, axis=1)
    counted = (ended == 0) | ((ended == 1) & (ys == END))          # up to the first END
    return (np_logp(params, h0, prev0, start, ys) * counted).sum(1), counted.sum(1)


def brute_force(params, h0, prev0, start):
    """Every distinct sequence of length L (END repeated after the first END)."""
    ys = np.array(list(itertools.product(range(V), repeat=L)))
    ended = np.cumsum(ys == END, axis=1)
    canonical = ~((ended > 0) & (ys != END)).any(1)  # only END after the first END
    ys = ys[canonical]
    scores, lengths = np_score(params, h0, prev0, start, ys)
    return ys, scores, lengths


def batch(seed=1, B=3):
    rng = np.random.default_rng(seed)
    h0 = rng.normal(size=(B, H)) * 0.5
    prev0, start = np.array([1, 3, 0][:B]), np.array([2, 1, 3][:B])
    carry = {"h": jnp.asarray(h0, jnp.float32), "prev": jnp.asarray(prev0)}
    return h0, prev0, start, carry


PARAMS = make_params(3)  # with these, α = 1 picks a longer best sequence than α = 0 in rows 0, 2
K_EXACT = V ** (L - 1)  # nothing is pruned before the last step, so the K beams are the top K


@jax.jit
def wide_beam(carry, start, alpha):  # alpha traced: one compile serves both tests
    return beam_search(jax_step(PARAMS), carry, start, beam_size=K_EXACT, max_length=L,
                       end_token=END, length_penalty=alpha)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_beam_wide_enough_finds_the_exact_top_k(alpha):
    params, K = PARAMS, K_EXACT
    h0, prev0, start, carry = batch()
    out = wide_beam(carry, start, alpha)
    assert out.sequences.shape == (3, L) and out.beams.shape == (3, K, L)
    for b in range(3):
        ys, s, n = brute_force(params, h0[b], prev0[b], start[b])
        ranked = s / n ** alpha
        order = np.argsort(-ranked)
        np.testing.assert_array_equal(out.sequences[b], ys[order[0]])
        np.testing.assert_allclose(out.beam_normalized_scores[b], ranked[order[:K]], rtol=1e-4)
        assert ({tuple(y) for y in np.asarray(out.beams[b])} == {tuple(y) for y in ys[order[:K]]})
        # the returned scores are the NumPy log-prob sums of the returned sequences
        s_ret, n_ret = np_score(params, h0[b], prev0[b], start[b], out.beams[b])
        np.testing.assert_allclose(out.beam_scores[b], s_ret, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(out.beam_lengths[b], n_ret)
        np.testing.assert_allclose(out.normalized_scores[b], ranked[order[0]], rtol=1e-4)


def test_one_beam_is_greedy_and_matches_a_numpy_argmax_loop():
    params = make_params(3)
    h0, prev0, start, carry = batch(4)
    step = jax_step(params)
    g, b1 = jax.jit(lambda c, s: (
        greedy(step, c, s, max_length=L + 2, end_token=END),
        beam_search(step, c, s, beam_size=1, max_length=L + 2, end_token=END, length_penalty=0.7),
    ))(carry, start)
    for b in range(3):  # argmax chain in NumPy: stop at END, then pad with END
        ys = np.zeros((1, 0), int)
        for _ in range(L + 2):
            if ys.shape[1] and END in ys[0]:
                nxt = END
            else:
                nxt = max(range(V), key=lambda v: np_logp(
                    params, h0[b], prev0[b], start[b], np.append(ys, [[v]], 1))[0, -1])
            ys = np.append(ys, [[nxt]], 1)
        np.testing.assert_array_equal(g.sequences[b], ys[0])
        s, n = np_score(params, h0[b], prev0[b], start[b], ys)
        np.testing.assert_allclose(g.scores[b], s[0], rtol=1e-4)
        assert g.lengths[b] == n[0]
    np.testing.assert_array_equal(b1.sequences, g.sequences)
    np.testing.assert_allclose(b1.scores, g.scores)


def test_jit_and_a_token_model_step():
    lm = models.language_model("gru", 7, 8)
    rng = np.random.default_rng(0)  # random params of lm's structure, without lm.init's cost
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype),
                          jax.eval_shape(lm.init, jax.random.key(0)))

    @jax.jit
    def decode(params, start):
        step = lambda c, t: lm.step(params, c, t)
        return beam_search(step, lm.initial_carry((2,)), start, beam_size=3, max_length=6,
                           end_token=6)

    start = np.array([1, 4])
    out = decode(params, start)
    # scores are log-prob sums under the model run over whole sequences by lm.apply
    seqs = np.asarray(out.beams).reshape(6, 6)                        # [B·K, T]
    inputs = np.concatenate([np.repeat(start, 3)[None], seqs[:, :-1].T])
    z = np.asarray(jax.jit(lm.apply)(params, inputs)[1], np.float64)  # [T, B·K, V]
    logp = z - z.max(-1, keepdims=True)
    logp = np.take_along_axis(logp - np.log(np.exp(logp).sum(-1, keepdims=True)),
                              seqs.T[..., None], -1)[..., 0]
    mask = np.arange(6)[:, None] < np.asarray(out.beam_lengths).reshape(6)
    np.testing.assert_allclose((logp * mask).sum(0), out.beam_scores.reshape(6), rtol=1e-5)
    ended = np.cumsum(seqs == 6, axis=1)
    assert not np.any((ended > 0) & (seqs != 6))          # finished beams stay finished
    assert np.all(np.diff(np.asarray(out.beam_normalized_scores, np.float64), axis=1) <= 0)


def test_beam_search_rejects_bad_shapes():
    step = jax_step(make_params())
    _, _, start, carry = batch()
    with pytest.raises(ValueError, match="start must be int"):
        beam_search(step, carry, jnp.asarray(start)[None], beam_size=2, max_length=3, end_token=0)
    with pytest.raises(ValueError, match="leading batch axis"):
        beam_search(step, carry, jnp.asarray(start[:2]), beam_size=2, max_length=3, end_token=0)
    with pytest.raises(ValueError, match="end_token must lie"):
        beam_search(step, carry, jnp.asarray(start), beam_size=2, max_length=3, end_token=V)


# ---------------------------------------------------------------------------
# BLEU


def nltk_bleu(refs, hyps, order, epsilon=0.0):
    from nltk.translate.bleu_score import SmoothingFunction
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
    smooth = SmoothingFunction(epsilon=epsilon).method1 if epsilon else None
    with warnings.catch_warnings():  # NLTK warns when a p_n is 0
        warnings.simplefilter("ignore")
        return nltk_corpus_bleu(refs, hyps, weights=(1 / order,) * order, smoothing_function=smooth)


def test_bleu_by_hand():
    hyp = "the cat sat on the mat".split()
    refs = ["the cat is on the mat".split(), "a cat sat on the mat".split()]
    # clipped matches against the max count over both references:
    #   1-grams: the×2 (ref 1 has 2), cat, sat, on, mat         -> 6/6
    #   2-grams: the cat (ref 1), cat sat, sat on, on the, the mat -> 5/5
    #   3-grams: cat sat on, sat on the, on the mat (not "the cat sat") -> 3/4
    #   4-grams: cat sat on the, sat on the mat (not "the cat sat on") -> 2/3
    # c = 6, r = 6, BP = 1;  BLEU = (1 · 1 · 3/4 · 2/3)^(1/4) = 2^(-1/4)
    assert bleu_stats([refs], [hyp]) == ((6, 5, 3, 2), (6, 5, 4, 3), 6, 6)
    assert sentence_bleu(refs, hyp) == pytest.approx(2 ** -0.25, rel=1e-12)
    assert sentence_bleu(refs, hyp) == pytest.approx(nltk_bleu([refs], [hyp], 4), rel=1e-12)


def test_papineni_the_the_the():
    # Papineni et al. (2002) §2.1: modified unigram precision 2/7, since "the"
    # occurs at most twice in a reference; no bigram matches, so BLEU = 0, and
    # with ε = 0.1 smoothing p_2..p_4 = 0.1/6, 0.1/5, 0.1/4 (c = r = 7, BP = 1).
    hyp = ["the"] * 7
    refs = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    assert bleu_stats([refs], [hyp]).matches == (2, 0, 0, 0)
    assert sentence_bleu(refs, hyp) == 0.0
    want = math.exp(sum(math.log(p) for p in (2 / 7, 0.1 / 6, 0.1 / 5, 0.1 / 4)) / 4)
    assert sentence_bleu(refs, hyp, epsilon=0.1) == pytest.approx(want, rel=1e-12)
    assert sentence_bleu(refs, hyp, epsilon=0.1) == pytest.approx(
        nltk_bleu([refs], [hyp], 4, 0.1), rel=1e-12)


def test_brevity_penalty_and_zero_matches():
    ref = "the cat is on the mat".split()
    # c = 2 < r = 6: BP = exp(1 − 6/2) = e^−2, p_1 = p_2 = 1
    assert sentence_bleu([ref], ["the", "cat"], max_order=2) == pytest.approx(math.exp(-2))
    # ties in |ref| − |hyp| go to the shorter reference: r = 4 < c = 5, BP = 1
    # (r = 6 would give exp(1 − 6/5)); every n-gram of [1..5] is in the second reference
    refs = [[1, 2, 3, 4], [1, 2, 3, 4, 5, 6]]
    assert sentence_bleu(refs, [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert nltk_bleu([refs], [[1, 2, 3, 4, 5]], 4) == pytest.approx(1.0)
    assert sentence_bleu([ref], "a dog ran off".split()) == 0.0
    assert sentence_bleu([ref], "a dog ran off".split(), epsilon=0.1) == 0.0
    assert corpus_bleu([[ref]], [[]]) == 0.0
    with pytest.raises(ValueError, match="pair up"):
        corpus_bleu([[ref]], [ref, ref])


@pytest.mark.parametrize("seed", range(4))
def test_corpus_bleu_matches_nltk_on_random_corpora(seed):
    rng = np.random.default_rng(seed)
    vocab = 5 + 3 * seed  # small vocabularies so that 4-grams match now and then
    sentence = lambda lo: [int(t) for t in rng.integers(vocab, size=rng.integers(lo, 13))]
    n = int(rng.integers(1, 30))
    hyps = [sentence(4) for _ in range(n)]  # ≥ 4 tokens: no NLTK phantom n-grams
    refs = [[sentence(1) for _ in range(rng.integers(1, 5))] for _ in range(n)]
    for order in (1, 2, 3, 4):
        for eps in (0.0, 0.1):
            assert corpus_bleu(refs, hyps, max_order=order, epsilon=eps) == pytest.approx(
                nltk_bleu(refs, hyps, order, eps), rel=1e-10, abs=1e-12)
