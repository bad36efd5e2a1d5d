r"""The baseline a character model must beat: an n-gram model with add-k
smoothing,

    p(w_t | w_{t−n+1..t−1}) = (c(context, w_t) + k) / (c(context) + k·V)

fitted by counting on the training tokens, with the order `n` and `k` chosen
on the validation tokens. Contexts are encoded as integers in base V, so
counting is `np.unique` and look-up `np.searchsorted`: seconds for millions of
characters. The first n−1 tokens of a stream use the shorter contexts
available (order min(t+1, n)), so every token is scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class NGramResult(NamedTuple):
    order: int
    k: float
    valid_bpc: float
    test_bpc: float
    table: dict  # {(order, k): valid bpc} for every pair tried


def _codes(tokens: np.ndarray, order: int, V: int) -> np.ndarray:
    """Integer code of each window `tokens[t−order+1 .. t]`, for t ≥ order−1."""
    codes = np.zeros(len(tokens) - order + 1, np.int64)
    for j in range(order):
        codes = codes * V + tokens[j:len(tokens) - order + 1 + j]
    return codes


class _Counts:
    def __init__(self, tokens: np.ndarray, order: int, V: int):
        self.order, self.V = order, V
        self.grams, self.gram_counts = np.unique(_codes(tokens, order, V), return_counts=True)
        if order > 1:
            self.ctx, self.ctx_counts = np.unique(_codes(tokens[:-1], order - 1, V),
                                                  return_counts=True)
        else:
            self.ctx, self.ctx_counts = np.zeros(1, np.int64), np.array([len(tokens)])

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray, counts: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(table, keys), 0, len(table) - 1)
        return np.where(table[i] == keys, counts[i], 0)

    def counts_for(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(c(context, w), c(context)) for every window of `tokens`."""
        grams = _codes(tokens, self.order, self.V)
        ctx = grams // self.V if self.order > 1 else np.zeros_like(grams)
        return (self._lookup(grams, self.grams, self.gram_counts),
                self._lookup(ctx, self.ctx, self.ctx_counts))


def _bits(counts: list[tuple[np.ndarray, np.ndarray]], k: float, V: int) -> float:
    total, n = 0.0, 0
    for joint, context in counts:
        total -= np.sum(np.log2((joint + k) / (context + k * V)))
        n += len(joint)
    return total / n


def _scored(models: list[_Counts], tokens: np.ndarray, order: int):
    """Counts for every token of `tokens`: the first order−1 with shorter contexts."""
    parts = [models[order - 1].counts_for(tokens)]
    for t in range(min(order - 1, len(tokens))):  # token t has t tokens of context
        j, c = models[t].counts_for(tokens[:t + 1])
        parts.append((j[-1:], c[-1:]))
    return parts


def fit_ngram(train: np.ndarray, valid: np.ndarray, test: np.ndarray, vocab_size: int, *,
              orders: Sequence[int] = range(1, 7),
              ks: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)) -> NGramResult:
    """Fit add-k n-gram models of every order in `orders` on `train`, pick
    (n, k) with the lowest validation bits per token, report its test bits."""
    V = vocab_size
    if max(orders) * math.log2(V) > 62:
        raise ValueError(f"fit_ngram: order {max(orders)} over {V} symbols overflows int64 codes")
    train, valid, test = (np.asarray(a, np.int64) for a in (train, valid, test))
    models = [_Counts(train, n, V) for n in range(1, max(orders) + 1)]
    table: dict[tuple[int, float], float] = {}
    for n in orders:
        scored = _scored(models, valid, n)
        for k in ks:
            table[(n, k)] = _bits(scored, k, V)
    order, k = min(table, key=table.__getitem__)
    return NGramResult(order, k, table[(order, k)], _bits(_scored(models, test, order), k, V),
                       {f"{n},{kk}": v for (n, kk), v in table.items()})
