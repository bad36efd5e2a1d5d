"""The training loop the application experiments share (addition, sentiment,
captioning, char-RNN): step, watch the loss, stop at the evaluation points.

`Loop` trains a `recurrax.train.TrainState` from its own step count to
`steps`. Each call `state, metrics = train_step(state, next_batch(step))`
(`step`: the steps done before the call) advances `stride` steps: 1 for a
plain train step, k for a jitted `lax.scan` of the train step over k stacked
batches (then `steps` and `eval_every` are multiples of k). The watched
metric `metrics[metric]` (a scalar, or one value per step of the call) is
kept in `values` and folded into the running mean, with w = `weight`,

    r ← m  (the first value of this run),   r ← (1 − w)·r + w·m  (every later one),

and shown on the progress bar, which advances by `stride`. Iterating over
the loop trains and yields the step count at every evaluation point (a
multiple of `eval_every`, and the last step); there the caller evaluates
`loop.state`, may replace it (a new learning rate), calls `record` and may
stop early by leaving the `for`:

    loop = Loop(state, train_step, next_batch, steps=1000, eval_every=100, bar=bar,
                results=ResultsFile(out / "history.jsonl"))
    for step in loop:
        valid = evaluate(loop.state.params)
        loop.record({"train_loss": loop.running, "valid_loss": valid},
                    line=f"step {step}: valid loss {valid:.3f}")

`record` stamps `seconds`, the wall time of this run's training steps and
evaluations so far plus the `seconds` the loop was given (a resumed run's),
leaving out what the caller does after `record` at that point (checkpoints,
plots); appends the record to `history` and to `results` (a
`recurrax.train.results.ResultsFile`, JSON lines) and writes `line` above the
bar. `Best` keeps the params of the best evaluation, for model selection and
early stopping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from experiments.progress import ProgressBar
from recurrax.train import TrainState
from recurrax.train.results import ResultsFile


class Loop:
    """Train `state` to `steps`, yielding at every evaluation point (see the module)."""

    def __init__(self, state: TrainState,
                 train_step: Callable[[TrainState, Any], tuple[TrainState, dict]],
                 next_batch: Callable[[int], Any], *, steps: int, eval_every: int,
                 bar: ProgressBar,
                 metric: str = "loss", weight: float = 0.05, stride: int = 1,
                 postfix: Callable[[float], dict[str, Any]] | None = None,
                 history: list[dict] | None = None, results: ResultsFile | None = None,
                 seconds: float = 0.0):
        self.state, self.train_step, self.next_batch = state, train_step, next_batch
        self.steps, self.eval_every, self.stride = steps, eval_every, stride
        self.bar, self.metric, self.weight = bar, metric, weight
        self.postfix = postfix or (lambda running: {metric: f"{running:.3f}"})
        self.history = [] if history is None else history  # records, appended in place
        self.results, self.seconds = results, seconds
        self.step = int(state.step)
        self.values: list[float] = []  # the watched metric of every step of this run
        self.running = float("nan")
        self._start = time.perf_counter()

    def __iter__(self) -> Iterator[int]:
        self._start = time.perf_counter()
        while self.step < self.steps:
            self.state, metrics = self.train_step(self.state, self.next_batch(self.step))
            self.step += self.stride
            for value in np.asarray(metrics[self.metric]).reshape(-1).tolist():
                self.running = (value if not self.values else
                                (1 - self.weight) * self.running + self.weight * value)
                self.values.append(value)
            self.bar.update(self.stride, **self.postfix(self.running))
            if self.step % self.eval_every == 0 or self.step == self.steps:
                yield self.step
                self._start = time.perf_counter()  # the caller's work after `record` is not timed

    def record(self, fields: dict[str, Any], *, line: str | None = None) -> dict:
        """`{"step", **fields, "seconds"}`: kept in `history`, appended to
        `results`, and `line` written above the progress bar."""
        now = time.perf_counter()
        self.seconds += now - self._start
        self._start = now
        record = {"step": self.step, **fields, "seconds": self.seconds}
        self.history.append(record)
        if self.results is not None:
            self.results.append(record)
        if line is not None:
            self.bar.write(line)
        return record


class Best:
    """The best evaluation so far by `score` (a tuple, larger is better; a tie
    keeps the earlier one): its score, record and params, and `waited`, the
    evaluations since it (0 right after a new best)."""

    def __init__(self) -> None:
        self.score: tuple | None = None
        self.record: dict = {}
        self.params: Any = None
        self.waited = 0

    def offer(self, score: tuple, record: dict, params: Any) -> bool:
        """Keep `params` if `score` beats the best so far; whether it did."""
        if self.score is None or score > self.score:
            self.score, self.record, self.params, self.waited = score, record, params, 0
            return True
        self.waited += 1
        return False
