"""`experiments.training`: the loop the applications share stops at the
evaluation points, advances by its stride, keeps the running mean its
docstring defines (NumPy written from the recurrence), records to a
`ResultsFile`, resumes from a state's step count, and `Best` keeps the first
of equal scores."""

from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments.training import Best, Loop
from recurrax.train import TrainState
from recurrax.train.results import ResultsFile


class Bar:
    """A progress bar that remembers what it was told."""

    def __init__(self) -> None:
        self.n, self.lines, self.postfixes = 0, [], []

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.n += n
        self.postfixes.append(postfix)

    def write(self, line: str) -> None:
        self.lines.append(line)


def state_at(step: int) -> TrainState:
    return TrainState(step=jnp.asarray(step, jnp.int32), params={}, opt_state=(), carry=None,
                      key=jnp.zeros(2, jnp.uint32))


def losses(n: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(1, 2, n)


def counting_step(values: np.ndarray, stride: int = 1):
    """A train step whose metric is the next `stride` entries of `values`
    (one per step), and which records the batches it was given."""
    seen = []

    def train_step(state, batch):
        seen.append(batch)
        step = int(state.step)
        out = values[step:step + stride]
        metrics = {"loss": out if stride > 1 else out[0]}
        return state._replace(step=jnp.asarray(step + stride, jnp.int32)), metrics

    return train_step, seen


def running_mean(values, weight):
    r = values[0]
    for v in values[1:]:
        r = (1 - weight) * r + weight * v
    return r


def test_stops_at_every_eval_point_and_the_last_step(tmp_path):
    values = losses(25)
    train_step, seen = counting_step(values)
    bar = Bar()
    results = ResultsFile(tmp_path / "history.jsonl")
    loop = Loop(state_at(0), train_step, lambda step: step * 10, steps=25, eval_every=10,
                bar=bar, results=results)
    points = []
    for step in loop:
        points.append(step)
        loop.record({"train_loss": loop.running}, line=f"at {step}")
    assert points == [10, 20, 25]
    assert seen == [10 * s for s in range(25)]  # next_batch gets the steps done so far
    assert bar.n == 25 and bar.lines == ["at 10", "at 20", "at 25"]
    np.testing.assert_allclose(loop.running, running_mean(values, 0.05), rtol=1e-12)
    np.testing.assert_allclose(loop.values, values, rtol=0)
    on_disk, problems = results.read()
    assert not problems and [r["step"] for r in on_disk] == [10, 20, 25]
    assert on_disk == loop.history
    np.testing.assert_allclose([r["train_loss"] for r in on_disk],
                               [running_mean(values[:n], 0.05) for n in (10, 20, 25)], rtol=1e-12)
    seconds = [r["seconds"] for r in on_disk]
    assert all(0 <= a <= b for a, b in zip(seconds, seconds[1:], strict=False))


def test_a_stride_folds_every_step_of_a_call_and_resumes_from_the_state():
    values = losses(40)
    train_step, seen = counting_step(values, stride=4)
    loop = Loop(state_at(8), train_step, lambda step: step, steps=40, eval_every=16,
                bar=Bar(), stride=4, weight=0.02, seconds=3.0)
    points = list(loop)
    assert points == [16, 32, 40] and seen == list(range(8, 40, 4))
    np.testing.assert_allclose(loop.running, running_mean(values[8:], 0.02), rtol=1e-12)
    assert loop.record({})["seconds"] >= 3.0  # a resumed run's seconds carry on


def test_leaving_the_loop_stops_training():
    train_step, seen = counting_step(losses(100))
    loop = Loop(state_at(0), train_step, lambda step: step, steps=100, eval_every=5, bar=Bar())
    for step in loop:
        if step == 15:
            break
    assert len(seen) == 15 and int(loop.state.step) == 15


def test_best_keeps_the_first_of_equal_scores_and_counts_the_wait():
    best = Best()
    assert best.offer((0.5,), {"step": 1}, "p1") and best.waited == 0
    assert not best.offer((0.5,), {"step": 2}, "p2") and best.waited == 1
    assert not best.offer((0.4,), {"step": 3}, "p3") and best.waited == 2
    assert best.params == "p1" and best.record == {"step": 1}
    assert best.offer((0.5, 1), {"step": 4}, "p4") and best.waited == 0 and best.params == "p4"
