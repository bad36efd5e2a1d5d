"""Memorization: read a random sequence of symbols, then reproduce it.

The filter of the architecture search of Jozefowicz et al. (2015): a candidate
cell had to learn to memorize a short random sequence before it was evaluated
on the real tasks.
"""

from __future__ import annotations

import string

import numpy as np

from recurrax.tasks.base import (
    Examples,
    Task,
    check_int,
    check_seed,
    check_sizes,
    draw_disjoint,
    generated_task,
    pad_examples,
)

PAD = "<pad>"
SEP = "<sep>"


def memorization(
    seed: int = 0,
    n_train: int = 10000,
    n_valid: int = 1000,
    n_test: int = 1000,
    length: int = 5,
    alphabet: int = 26,
) -> Task:
    """Read `length` symbols, a separator, then reproduce the symbols one per step.

    Definition: the symbols are drawn uniformly and independently from the
    first `alphabet` lowercase letters. Every row has T = 2 * length + 1 steps;
    for length = 3 and the symbols "c a b":

        inputs   c      a      b      <sep>  <pad>  <pad>  <pad>
        targets  <pad>  <pad>  <pad>  <pad>  c      a      b
        mask     F      F      F      F      T      T      T

    `mask` is True exactly on the `length` answer positions, where the input is
    the blank token "<pad>" (id 0, which also pads). vocab: "<pad>" (0), the
    letters (1..alphabet), "<sep>" (alphabet + 1). Metric: per-symbol accuracy.
    An example is its symbol sequence; no test sequence occurs in valid or
    train, no valid sequence in train (see `base.draw_disjoint`).
    """
    seed = check_seed(seed)
    sizes = check_sizes(n_train, n_valid, n_test)
    length = check_int("length", length, 1)
    alphabet = check_int("alphabet", alphabet, 2, 26)
    sep = alphabet + 1

    def draw(rng: np.random.Generator, n: int) -> list[tuple[bytes, np.ndarray]]:
        symbols = rng.integers(1, alphabet + 1, size=(n, length), dtype=np.int32)
        return [(row.tobytes(), row) for row in symbols]

    hint = "lower n_test/n_valid or raise length or alphabet"
    splits = draw_disjoint(seed, sizes, draw, hint)
    blank, quiet = [0] * length, [0] * (length + 1)
    answer_mask = [False] * (length + 1) + [True] * length

    def examples(rows: list[np.ndarray]) -> Examples:
        return pad_examples([([*row, sep, *blank], [*quiet, *row], answer_mask) for row in rows])

    vocab = (PAD, *string.ascii_lowercase[:alphabet], SEP)
    return generated_task("memorization", vocab, splits, examples)
