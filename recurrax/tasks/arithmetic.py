"""Arithmetic: the sum or difference of two numbers, read among distractors.

Jozefowicz et al. (2015), Section 3.1: the network reads two numbers of up to
8 digits and an operation, with a random number of random distractor symbols
between successive input characters, then "=", then emits the result one
character at a time, e.g. "3e36d9-h1h39f94eeh43keg3c=-13991064".
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
END = "."
DIGITS = tuple(string.digits)
OPERATORS = ("+", "-")
DISTRACTORS = tuple(string.ascii_lowercase)
VOCAB: tuple[str, ...] = (PAD, *DIGITS, *OPERATORS, "=", END, *DISTRACTORS)
_ID = {tok: i for i, tok in enumerate(VOCAB)}

Problem = tuple[int, str, int]


def _numbers(rng: np.random.Generator, n: int, max_digits: int) -> np.ndarray:
    """n numbers: a digit count uniform in 1..max_digits, then a number uniform
    among those with exactly that many digits (0..9 for one digit)."""
    digits = rng.integers(1, max_digits + 1, size=n)
    low = np.where(digits == 1, 0, 10 ** (digits - 1))
    return rng.integers(low, 10**digits)


def _split(values: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """`values` cut into consecutive pieces of the given sizes."""
    return np.split(values, np.cumsum(sizes)[:-1])


def _sequence(problem: Problem, gaps: np.ndarray, letters: np.ndarray) -> str:
    """The character sequence "a op b" with `gaps[i]` distractors after its
    i-th character (the last gap comes before "="), then "=", the answer, END."""
    a, op, b = problem
    question = f"{a}{op}{b}"
    out, used = [], 0
    for char, gap in zip(question, gaps, strict=True):
        out += [char, *(DISTRACTORS[k] for k in letters[used : used + gap])]
        used += int(gap)
    return "".join(out) + f"={a + b if op == '+' else a - b}{END}"


def arithmetic(
    seed: int = 0,
    n_train: int = 10000,
    n_valid: int = 1000,
    n_test: int = 1000,
    max_digits: int = 8,
    max_distractors: int = 3,
) -> Task:
    """Sum or difference of two numbers among distractors, answered character by character.

    Definition: each number has a digit count uniform in 1..max_digits and is
    then uniform among the numbers with that many digits; the operation is "+"
    or "-" with probability 1/2 each; answers may be negative ("-" sign).
    Distractors: after each character of "a op b" (so also before "=") come
    k ~ Uniform{0..max_distractors} distractor letters, each uniform over
    "a".."z"; none after "=". The sequence s = question "=" answer "." is fed
    with teacher forcing: inputs = s[:-1], targets = s[1:], so at each answer
    position the input is the previous character. `mask` is True exactly where
    the target is an answer character or the end symbol ".", i.e. from the
    step whose input is "=" to the last step. vocab: "<pad>" (0), digits,
    "+", "-", "=", ".", letters. Metric: per-character accuracy on the mask.
    An example is its problem (a, op, b): no test problem occurs in valid or
    train, no valid problem in train, whatever the distractors.
    """
    seed = check_seed(seed)
    sizes = check_sizes(n_train, n_valid, n_test)
    max_digits = check_int("max_digits", max_digits, 1, 18)
    max_distractors = check_int("max_distractors", max_distractors, 0)

    def draw(rng: np.random.Generator, n: int) -> list[tuple[Problem, str]]:
        a, b = _numbers(rng, n, max_digits), _numbers(rng, n, max_digits)
        ops = [OPERATORS[k] for k in rng.integers(0, 2, size=n)]
        problems = [(int(x), op, int(y)) for x, op, y in zip(a, ops, b, strict=True)]
        widths = [len(f"{x}{op}{y}") for x, op, y in problems]
        gaps = _split(rng.integers(0, max_distractors + 1, size=sum(widths)), widths)
        counts = [int(g.sum()) for g in gaps]
        letters = _split(rng.integers(0, len(DISTRACTORS), size=sum(counts)), counts)
        return [(p, _sequence(p, g, ls)) for p, g, ls in zip(problems, gaps, letters, strict=True)]

    hint = "lower n_test/n_valid or raise max_digits"
    splits = draw_disjoint(seed, sizes, draw, hint)

    def examples(sequences: list[str]) -> Examples:
        rows = []
        for s in sequences:
            ids, equals = [_ID[c] for c in s], s.index("=")
            rows.append((ids[:-1], ids[1:], [t >= equals for t in range(len(s) - 1)]))
        return pad_examples(rows)

    return generated_task("arithmetic", VOCAB, splits, examples)
