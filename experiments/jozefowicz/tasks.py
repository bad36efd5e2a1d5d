"""How each task of the study is fed to a model, trained and scored.

| task         | data            | input     | loss per step                  | reported (test)            |
| ------------ | --------------- | --------- | ------------------------------ | -------------------------- |
| memorization | `Examples`      | tokens    | cross-entropy, answer only     | accuracy on answer symbols |
| arithmetic   | `Examples`      | tokens    | cross-entropy, answer only     | accuracy on answer chars   |
| xml          | `Stream`, TBPTT | tokens    | cross-entropy                  | next-character accuracy    |
| words        | `Stream`, TBPTT | tokens    | cross-entropy                  | perplexity, exp(−NLL)      |
| music        | piano `Rolls`   | 0/1 frame | Bernoulli NLL summed over keys | NLL per time step          |

Every `loss_fn` has the signature of `recurrax.train`; `evaluate` scores a
whole population on a split at once (metrics per member).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recurrax import batching, losses, tasks as task_lib
from recurrax.tasks import Examples


class Setup(NamedTuple):
    name: str
    kind: str                    # "examples", "stream" or "rolls"
    vocab_in: int
    vocab_out: int
    inputs: str                  # "tokens" or "features"
    train: Any                   # a batcher with .batch(i)
    valid: Any
    test: Any
    metric: str                  # the reported metric, e.g. "accuracy"
    higher_is_better: bool


def _rolls_as_examples(rolls) -> Examples:
    """Predict frame t+1 from frames ≤ t: inputs frames[:-1], targets frames[1:]."""
    frames, lengths = rolls.frames, rolls.lengths
    T = frames.shape[1] - 1
    mask = np.arange(T)[None, :] < (lengths[:, None] - 1)
    return Examples(frames[:, :-1], frames[:, 1:], mask, np.maximum(lengths - 1, 0))


def prepare(name: str, batch: int, unroll: int, task_kwargs: dict | None = None) -> Setup:
    kw = dict(task_kwargs or {})
    if name in ("arithmetic", "memorization"):
        t = task_lib.get(name, **kw)
        return Setup(name, "examples", len(t.vocab), len(t.vocab), "tokens",
                     batching.ExampleBatches(t.train, batch, seed=0),
                     batching.ExampleBatches(t.valid, batch, shuffle=False),
                     batching.ExampleBatches(t.test, batch, shuffle=False), "accuracy", True)
    if name in ("xml", "words"):
        t = task_lib.xml(**kw) if name == "xml" else task_lib.text("word", **kw)
        stream = lambda s: batching.StreamWindows(s.tokens, s.doc_starts, batch, unroll)  # noqa: E731
        metric = "accuracy" if name == "xml" else "perplexity"
        return Setup(name, "stream", len(t.vocab), len(t.vocab), "tokens", stream(t.train),
                     stream(t.valid), stream(t.test), metric, name == "xml")
    if name == "music":
        t = task_lib.music(**kw)
        P = len(t.vocab)
        whole = lambda r: batching.ExampleBatches(  # noqa: E731  evaluation: every chorale at once
            _rolls_as_examples(r), len(r.lengths), shuffle=False)
        return Setup(name, "rolls", P, P, "features",
                     batching.ExampleBatches(_rolls_as_examples(t.train),
                                             min(batch, len(t.train.lengths)), seed=0),
                     whole(t.valid), whole(t.test), "nll_per_step", False)
    raise ValueError(f"unknown task {name!r}; expected memorization, arithmetic, xml, words "
                     f"or music")


def make_loss(kind: str, model) -> Callable:
    """`loss_fn(params, batch, carry, key) -> (loss, (carry, metrics))` for a
    task of this `kind` ("examples", "stream" or "rolls")."""

    def loss_fn(params, batch, carry, key):
        if kind == "stream":
            carry, out = model.apply(params, batch["inputs"], carry, resets=batch["resets"], key=key)
        else:
            carry, out = model.apply(params, batch["inputs"], key=key)
            carry = None
        if kind == "rolls":
            return losses.bernoulli_nll(out, batch["targets"], batch["mask"]), (carry, {})
        return losses.softmax_cross_entropy(out, batch["targets"], batch.get("mask")), (carry, {})

    return loss_fn


def make_scores(kind: str, model) -> Callable:
    """`scores(params[M], batch, carry[M]) -> (carry, {"nll", "hits", "count"})`,
    jitted and mapped over the members (compiled once per population)."""

    def scores(params, batch, carry):
        if kind == "stream":
            carry, out = model.apply(params, batch["inputs"], carry, resets=batch["resets"])
        else:
            _, out = model.apply(params, batch["inputs"])
        mask = batch.get("mask")
        mask = jnp.ones(batch["targets"].shape[:2], bool) if mask is None else mask
        count = jnp.sum(mask)
        if kind == "rolls":
            return carry, {"nll": losses.bernoulli_nll(out, batch["targets"], mask),
                           "hits": jnp.zeros(()), "count": count}
        return carry, {"nll": losses.softmax_cross_entropy(out, batch["targets"], mask),
                       "hits": losses.accuracy(out, batch["targets"], mask), "count": count}

    return jax.jit(jax.vmap(scores, in_axes=(0, None, 0)))


def evaluate(setup: Setup, scores: Callable, params, carry, batches, max_batches: int) -> dict:
    """Metrics per member (`params` and `carry` carry a leading member axis),
    each a mean over the valid positions of the first `max_batches` batches;
    `scores` from `make_scores`."""
    total_nll = total_hits = total = 0.0
    for i in range(min(len(batches), max_batches)):
        carry, m = scores(params, batches.batch(i), carry)
        w = np.asarray(m["count"], np.float64)
        total_nll = total_nll + np.asarray(m["nll"], np.float64) * w
        total_hits = total_hits + np.asarray(m["hits"], np.float64) * w
        total = total + w
    nll = total_nll / np.maximum(total, 1)
    out = {"nll": nll}
    if setup.kind == "rolls":
        out["nll_per_step"] = nll
    elif setup.name == "words":
        out["perplexity"] = np.exp(nll)
        out["word_probability"] = np.exp(-nll)
    else:
        out["accuracy"] = total_hits / np.maximum(total, 1)
    return out
