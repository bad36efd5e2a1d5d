"""The add-k n-gram baseline against a plain-Python count."""

import math
from collections import Counter

import numpy as np
import pytest

from recurrax.metrics.ngram import fit_ngram


def naive_bits(train, text, n, k, V):
    """Average −log2 p over `text`, the first n−1 tokens with shorter contexts."""
    grams = [Counter(tuple(train[i:i + m]) for i in range(len(train) - m + 1))
             for m in range(1, n + 1)]
    contexts = [Counter(tuple(train[i:i + m]) for i in range(len(train) - m))
                for m in range(0, n)]
    total = 0.0
    for t in range(len(text)):
        m = min(t + 1, n)
        gram = tuple(text[t - m + 1:t + 1])
        c_joint = grams[m - 1][gram]
        c_ctx = contexts[m - 1][gram[:-1]] if m > 1 else len(train)
        total -= math.log2((c_joint + k) / (c_ctx + k * V))
    return total / len(text)


@pytest.mark.parametrize("n,k", [(1, 0.5), (2, 0.1), (3, 0.01), (4, 1.0)])
def test_bits_match_a_plain_count(n, k, rng):
    V = 5
    train = list(rng.integers(0, V, 400))
    valid = list(rng.integers(0, V, 60))
    result = fit_ngram(np.array(train), np.array(valid), np.array(valid), V, orders=[n], ks=[k])
    assert (result.order, result.k) == (n, k)
    assert result.valid_bpc == pytest.approx(naive_bits(train, valid, n, k, V), rel=1e-9)


def test_the_best_order_is_chosen_on_validation():
    text = np.array([0, 1, 2, 0, 1, 3] * 300)  # the next symbol is fixed by the three before it
    result = fit_ngram(text[:1200], text[1200:1500], text[1500:], 4, orders=range(1, 5))
    assert result.order >= 3 and result.k == 1e-3
    assert result.test_bpc < 0.05 < result.table["1,0.001"]
