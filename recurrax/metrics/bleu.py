r"""Corpus BLEU (Papineni et al. 2002), the metric of machine translation and
image captioning.

For a corpus of hypotheses `c⁽ⁱ⁾`, each with references `R⁽ⁱ⁾`, and n-gram
order `n = 1..N`:

    modified precision   p_n = Σ_i Σ_{g ∈ c⁽ⁱ⁾} min(count_{c⁽ⁱ⁾}(g), max_{r ∈ R⁽ⁱ⁾} count_r(g))
                               ─────────────────────────────────────────────────
                               Σ_i (number of n-grams in c⁽ⁱ⁾)

    brevity penalty      BP = 1 if c > r, else exp(1 − r/c)
                         c = Σ_i |c⁽ⁱ⁾|,  r = Σ_i |closest r ∈ R⁽ⁱ⁾| (the closest
                         reference length to |c⁽ⁱ⁾|; on a tie the shorter one)

    BLEU                 = BP · exp(Σ_n w_n log p_n),   w_n = 1/N

Counts are summed over the corpus before dividing (a micro average); the
corpus score is not the mean of sentence scores. BLEU-n in captioning papers is
`max_order=n`. Without smoothing BLEU is 0 as soon as one p_n is 0, common for
single sentences; `epsilon > 0` applies Chen & Cherry (2014) smoothing method 1,
replacing a zero numerator by ε (NLTK's `SmoothingFunction().method1`, ε=0.1).
A corpus with no unigram match at all scores 0 with or without smoothing.

Matches `nltk.translate.bleu_score.corpus_bleu` whenever every hypothesis has
at least `max_order` tokens; for shorter ones NLTK counts a phantom n-gram in
the denominator (`max(1, #n-grams)` per sentence), while this module follows
the paper and counts the n-grams there are.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import NamedTuple

Tokens = Sequence[Hashable]


class BleuStats(NamedTuple):
    """Sufficient statistics of corpus BLEU; they add up over sentences.

    `matches[n-1]` and `totals[n-1]` are the numerator and denominator of p_n;
    `hyp_length` is c and `ref_length` is r above."""

    matches: tuple[int, ...]
    totals: tuple[int, ...]
    hyp_length: int
    ref_length: int


def ngrams(tokens: Tokens, n: int) -> Counter:
    """Counts of the n-grams (as tuples) in `tokens`."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def closest_ref_length(references: Sequence[Tokens], hyp_length: int) -> int:
    """Length of the reference closest in length to the hypothesis; the shorter on a tie."""
    return min((len(r) for r in references), key=lambda n: (abs(n - hyp_length), n))


def brevity_penalty(hyp_length: int, ref_length: int) -> float:
    """BP = 1 if c > r, else exp(1 − r/c); 0 for an empty corpus (c = 0)."""
    if hyp_length > ref_length:
        return 1.0
    if hyp_length == 0:
        return 0.0
    return math.exp(1.0 - ref_length / hyp_length)


def bleu_stats(list_of_references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens],
               max_order: int = 4) -> BleuStats:
    """Clipped n-gram matches, n-gram totals and lengths summed over the corpus."""
    if len(list_of_references) != len(hypotheses):
        raise ValueError(f"bleu: got {len(hypotheses)} hypotheses but "
                         f"{len(list_of_references)} lists of references; they must pair up")
    matches, totals = [0] * max_order, [0] * max_order
    hyp_length = ref_length = 0
    for references, hyp in zip(list_of_references, hypotheses, strict=True):
        if len(references) == 0:
            raise ValueError("bleu: every hypothesis needs at least one reference")
        for n in range(1, max_order + 1):
            counts = ngrams(hyp, n)
            max_ref = Counter()
            for ref in references:
                max_ref |= ngrams(ref, n)  # union of Counters = elementwise max
            matches[n - 1] += sum((counts & max_ref).values())  # & = elementwise min
            totals[n - 1] += sum(counts.values())
        hyp_length += len(hyp)
        ref_length += closest_ref_length(references, len(hyp))
    return BleuStats(tuple(matches), tuple(totals), hyp_length, ref_length)


def bleu_from_stats(stats: BleuStats, epsilon: float = 0.0) -> float:
    """BLEU = BP · exp(Σ_n (1/N) log p_n) from summed statistics; `epsilon`
    replaces zero match counts (Chen & Cherry 2014, method 1)."""
    if stats.matches[0] == 0:
        return 0.0
    log_p = 0.0
    for m, t in zip(stats.matches, stats.totals, strict=True):
        if m == 0:
            if epsilon <= 0 or t == 0:
                return 0.0
            m = epsilon
        log_p += math.log(m / t) / len(stats.matches)
    return brevity_penalty(stats.hyp_length, stats.ref_length) * math.exp(log_p)


def corpus_bleu(list_of_references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens],
                *, max_order: int = 4, epsilon: float = 0.0) -> float:
    """Corpus BLEU-`max_order` in [0, 1] (multiply by 100 for the usual scale).

    `hypotheses[i]` is a token list and `list_of_references[i]` a list of
    token lists (the NLTK argument order). Tokens are any hashable values.
    """
    if max_order < 1:
        raise ValueError(f"bleu: max_order must be >= 1, got {max_order}")
    return bleu_from_stats(bleu_stats(list_of_references, hypotheses, max_order), epsilon)


def sentence_bleu(references: Sequence[Tokens], hypothesis: Tokens, *, max_order: int = 4,
                  epsilon: float = 0.0) -> float:
    """BLEU of one hypothesis against its references (a corpus of one)."""
    return corpus_bleu([references], [hypothesis], max_order=max_order, epsilon=epsilon)
