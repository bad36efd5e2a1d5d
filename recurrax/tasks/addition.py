r"""The adding problem: read a long sequence of (value, marker) pairs and output
the sum of the two marked values at the end.

Hochreiter and Schmidhuber (1997), "Long short-term memory", Section 5.4
(Experiment 4), in the form Raffel and Ellis (2015), "Feed-forward networks
with attention can solve some long-term memory problems", ran it. This module
follows their code (github.com/craffel/lstm_problems, function `add`, called by
github.com/craffel/ff-attention/toy_problems), which was read for this port.

Definition, for a row of length ℓ drawn uniformly from {T0, …, T_max}
(T_max = T0 + ⌊T0/10⌋ by default: the "T0 to 1.1·T0" of Raffel and Ellis):

    x_t = (v_t, m_t),   v_t ~ U[−1, 1] independently,   t = 0 … ℓ−1
    m_0 = m_{ℓ−1} = −1                     (start and end markers)
    m_{N1} = m_{N2} = 1,  N1 ~ U{1, …, 9},  N2 ~ U({1, …, ⌊ℓ/2⌋ − 2} \ {N1})
    m_t = 0 elsewhere
    y = 0.5 + (v_{N1} + v_{N2}) / 4        (normalized=True, the paper's target in [0, 1])
    y = v_{N1} + v_{N2}                    (normalized=False, the raw sum)

So the first marked value lies in the first 10 steps and the second in the
first half: a model that reads left to right has to hold the first value for
at least ℓ/2 steps. Steps t >= ℓ are padding, x_t = (0, 0), and `lengths`
follows the library's convention (row b is valid at 0 <= t < lengths[b]).

"Solved": Raffel and Ellis's code calls an output correct when its absolute
error is below 0.04 (Hochreiter and Schmidhuber's threshold; `correct` below)
and stops training once *every* sequence of a held-out set of 1000 is
correct: the task is solved. Hochreiter and Schmidhuber's own stopping rule
also asks for an average training MSE below 0.01 (quoted from memory of the
1997 paper, not checked against its text here). `MSE < 0.01` alone is a much
weaker bar: predicting the mean target already gives MSE = Var(y) =
(2/3)/16 ≈ 0.042, and all errors below 0.04 imply MSE < 0.0016.

Departures from the reference code: its longest row is ⌈1.1·T0⌉ − 1 computed
in floating point (55 for T0 = 50, but 549 for T0 = 500); here it is the
integer T0 + ⌊T0/10⌋, inclusive. Its arrays are [N, T, 2], padded to ⌈1.1·T0⌉;
here [T, B, 2] (time-major), padded to T_max.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recurrax.tasks.base import check_int

CORRECT_ERROR = 0.04  # |ŷ − y| below this counts as correct (Hochreiter & Schmidhuber)
MIN_LENGTH = 11  # N1 can be 9 and step ℓ−1 holds the end marker, so ℓ − 1 > 9
TARGET_VARIANCE = 1.0 / 24.0  # Var(0.5 + (v1 + v2)/4) = (2/3)/16: the MSE of predicting 0.5


class AdditionBatch(NamedTuple):
    """One batch of the adding problem (time-major)."""

    inputs: np.ndarray  # float32 [T, B, 2]: (value, marker), zero after lengths
    targets: np.ndarray  # float32 [B]
    lengths: np.ndarray  # int32 [B], each in [min_length, max_length]
    marked: np.ndarray  # int32 [2, B]: N1 and N2, the marked steps


def addition(rng: np.random.Generator | int, batch: int, min_length: int,
             max_length: int | None = None, *, normalized: bool = True) -> AdditionBatch:
    """Draw `batch` sequences of the adding problem (see the module docstring).

    Args:
      rng: a `numpy.random.Generator`, or a non-negative int seed for
        `numpy.random.default_rng` (the same seed gives the same batch).
      batch: number of sequences B.
      min_length: T0, the shortest row (at least 11).
      max_length: the longest row and the padded length T; default
        T0 + ⌊T0/10⌋. `max_length == min_length` gives fixed-length rows.
      normalized: the paper's target 0.5 + (v1 + v2)/4 (default), else v1 + v2.
    """
    seed_like = isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_))
    if not (seed_like or isinstance(rng, np.random.Generator)):
        raise ValueError(f"rng: expected a numpy.random.Generator or an int seed, got {rng!r}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(check_int("rng (seed)", rng, 0))
    B = check_int("batch", batch, 1)
    T0 = check_int("min_length", min_length, MIN_LENGTH)
    T = T0 + T0 // 10 if max_length is None else check_int("max_length", max_length, T0)

    lengths = rng.integers(T0, T + 1, size=B)
    values = rng.uniform(-1.0, 1.0, size=(T, B))
    n1 = rng.integers(1, 10, size=B)
    # N2 uniform on {1, …, m} \ {N1}, m = ⌊ℓ/2⌋ − 2: draw k from {1, …, count}
    # and step over N1 (count = m − 1 when N1 <= m, else m).
    m = lengths // 2 - 2
    count = m - (n1 <= m)
    k = 1 + np.floor(rng.uniform(size=B) * count).astype(np.int64)
    n2 = k + ((n1 <= m) & (k >= n1))

    cols = np.arange(B)
    t = np.arange(T)[:, None]
    values = np.where(t < lengths, values, 0.0)
    markers = np.zeros((T, B))
    markers[0, cols] = -1.0
    markers[lengths - 1, cols] = -1.0
    markers[n1, cols] = 1.0
    markers[n2, cols] = 1.0
    total = values[n1, cols] + values[n2, cols]
    targets = 0.5 + total / 4.0 if normalized else total
    inputs = np.stack([values, markers], axis=-1).astype(np.float32)
    return AdditionBatch(inputs, targets.astype(np.float32), lengths.astype(np.int32),
                         np.stack([n1, n2]).astype(np.int32))


def correct(predictions: np.ndarray, targets: np.ndarray, normalized: bool = True) -> np.ndarray:
    """`|ŷ − y| < 0.04` per sequence, the paper's notion of a correct output
    (on the raw-sum scale the threshold is 4 · 0.04, the same error)."""
    threshold = CORRECT_ERROR if normalized else 4 * CORRECT_ERROR
    return np.abs(np.asarray(predictions) - np.asarray(targets)) < threshold
