"""Minibatches for training and evaluation, as time-major NumPy arrays.

Both batchers are indexable by the global step, so a run resumed at step `s`
sees exactly the batches an uninterrupted run would have seen.

* `StreamWindows`: a long token stream (language modelling) for truncated
  BPTT. The stream is cut into `B` contiguous lanes, each read in windows of
  `T` steps; window `i + 1` of a lane continues where window `i` stopped, so
  the carry is handed from one window to the next. `resets[t, b] = 1` where a
  document starts and at the start of every lane (every epoch).
* `ExampleBatches`: padded example sequences (`Examples`, or anything with
  `inputs`, `targets`, `mask`, `lengths`: integer tokens or float frames, whose
  dtype is kept), shuffled anew each epoch by a generator seeded with
  `(seed, epoch)`.
"""

from __future__ import annotations

import numpy as np

from recurrax.nn._checks import check_size


class StreamWindows:
    """`batch(i)` -> `{"inputs", "targets", "resets"}`, each `[T, B]`:
    `targets[t] = inputs[t + 1]` along each lane; with `scored` (bool, one
    per token: is the token after it scored?) also `"mask"`, so that only
    some targets count (e.g. the answers of a stream of arithmetic problems)."""

    def __init__(self, tokens: np.ndarray, doc_starts: np.ndarray | None, batch_size: int,
                 steps: int, scored: np.ndarray | None = None):
        batch_size = check_size("StreamWindows", "batch_size", batch_size)
        steps = check_size("StreamWindows", "steps", steps)
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"StreamWindows: tokens must be a 1-D array of integer ids, got "
                             f"shape {tokens.shape} and dtype {tokens.dtype}")
        if tokens.size and (tokens.min() < 0 or tokens.max() > np.iinfo(np.int32).max):
            raise ValueError(f"StreamWindows: tokens must be ids in [0, 2**31), got values from "
                             f"{tokens.min()} to {tokens.max()}")
        for name, flags in (("doc_starts", doc_starts), ("scored", scored)):
            if flags is not None and np.shape(flags) != tokens.shape:
                raise ValueError(f"StreamWindows: {name} must have one entry per token, shape "
                                 f"{tokens.shape}, got {np.shape(flags)}")
        if len(tokens) < 2:
            raise ValueError(f"StreamWindows: a stream needs at least 2 tokens (an input and "
                             f"its target), got {len(tokens)}")
        lane = (len(tokens) - 1) // batch_size
        if lane < steps:
            raise ValueError(
                f"StreamWindows: a stream of {len(tokens)} tokens cut into {batch_size} lanes "
                f"gives lanes of {lane} tokens, shorter than one window of {steps} steps")
        n = batch_size * lane
        starts = np.zeros(len(tokens), bool) if doc_starts is None else np.asarray(doc_starts, bool)
        self.inputs = tokens[:n].reshape(batch_size, lane)
        self.targets = tokens[1:n + 1].reshape(batch_size, lane)
        self.resets = starts[:n].reshape(batch_size, lane).copy()
        self.resets[:, 0] = True  # every lane (and so every epoch) starts from zeros
        self.mask = None if scored is None else np.asarray(scored, bool)[:n].reshape(
            batch_size, lane)
        self.steps = steps
        self.windows = lane // steps

    def __len__(self) -> int:
        return self.windows

    def batch(self, index: int) -> dict[str, np.ndarray]:
        index = check_size("StreamWindows.batch", "index", index, minimum=0)
        w = index % self.windows
        cut = slice(w * self.steps, (w + 1) * self.steps)
        out = {"inputs": self.inputs[:, cut].T.astype(np.int32),
               "targets": self.targets[:, cut].T.astype(np.int32),
               "resets": self.resets[:, cut].T.astype(np.float32)}
        if self.mask is not None:
            out["mask"] = self.mask[:, cut].T.copy()
        return out

    def __iter__(self):
        return (self.batch(i) for i in range(self.windows))

    @property
    def tokens_per_epoch(self) -> int:
        return self.windows * self.steps * self.inputs.shape[0]


class ExampleBatches:
    """`batch(i)` -> `{"inputs", "targets", "mask"}` `[T, B]` and `"lengths"` `[B]`,
    drawn from `Examples` (`inputs`, `targets`, `mask`, `lengths`, all `[N, ...]`)
    without replacement within an epoch; the last partial batch is dropped."""

    def __init__(self, examples, batch_size: int, *, seed: int = 0, shuffle: bool = True):
        fields = ("inputs", "targets", "mask", "lengths")
        missing = [f for f in fields if not hasattr(examples, f)]
        if missing:
            raise TypeError(f"ExampleBatches: examples must have the fields {list(fields)} "
                            f"(e.g. recurrax.tasks Examples), {type(examples).__name__} lacks "
                            f"{missing}")
        shapes = {f: np.shape(getattr(examples, f)) for f in fields}
        if min(map(len, shapes.values())) < 1 or len({v[0] for v in shapes.values()}) != 1:
            raise ValueError(f"ExampleBatches: inputs, targets, mask and lengths must share "
                             f"their first axis (one row per example), got {shapes}")
        if (len(shapes["mask"]) != 2 or len(shapes["lengths"]) != 1
                or shapes["inputs"][:2] != shapes["mask"]
                or shapes["targets"][:2] != shapes["mask"]):
            raise ValueError(f"ExampleBatches: expected inputs and targets [N, T, ...], mask "
                             f"[N, T] and lengths [N], got {shapes}")
        n = shapes["inputs"][0]
        if n == 0:
            raise ValueError("ExampleBatches: examples holds no example (N = 0)")
        batch_size = check_size("ExampleBatches", "batch_size", batch_size)
        if batch_size > n:
            raise ValueError(f"ExampleBatches: batch_size must lie in [1, {n}], got {batch_size}")
        seed = check_size("ExampleBatches", "seed", seed, minimum=0)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"ExampleBatches: shuffle must be True or False, got "
                            f"{type(shuffle).__name__} {shuffle!r}")
        self.examples = examples
        self.batch_size, self.seed, self.shuffle = batch_size, seed, bool(shuffle)
        self.batches = n // batch_size

    def __len__(self) -> int:
        return self.batches

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.examples.inputs)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng((self.seed, epoch)).permutation(n)

    def batch(self, index: int) -> dict[str, np.ndarray]:
        index = check_size("ExampleBatches.batch", "index", index, minimum=0)
        epoch, b = divmod(index, self.batches)
        rows = self._order(epoch)[b * self.batch_size:(b + 1) * self.batch_size]
        ex = self.examples
        return {"inputs": np.swapaxes(ex.inputs[rows], 0, 1),  # time first; dtype kept
                "targets": np.swapaxes(ex.targets[rows], 0, 1),
                "mask": ex.mask[rows].T.astype(bool),
                "lengths": ex.lengths[rows].astype(np.int32)}

    def __iter__(self):
        return (self.batch(i) for i in range(self.batches))
