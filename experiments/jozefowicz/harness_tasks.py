"""How each task of the study is fed to a model, trained and scored.

| task         | data                   | input     | loss per step          | reported (test)    |
| ------------ | ---------------------- | --------- | ---------------------- | ------------------ |
| memorization | `Examples`, or stream* | tokens    | cross-entropy, answers | accuracy, answers  |
| arithmetic   | `Examples`, or stream* | tokens    | cross-entropy, answers | accuracy, answers  |
| xml          | `Stream`, TBPTT        | tokens    | cross-entropy          | next-char accuracy |
| words        | `Stream`, TBPTT        | tokens    | cross-entropy          | perplexity         |
| music        | piano `Rolls`          | 0/1 frame | Bernoulli NLL, keys    | NLL per time step  |

(*) `examples_as_stream`: the problems one after another as one stream cut
into TBPTT windows, only the answers scored. Every `loss_fn` has the
signature of `recurrax.train`; `evaluate` scores a whole population on a
split in one compiled call (metrics per member).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from recurrax import tasks as task_lib
from recurrax.nn import losses
from recurrax.tasks import Examples, Rolls
from recurrax.tasks import base as task_base
from recurrax.train import batching, population


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


def _rolls_as_examples(rolls: Rolls) -> Examples:
    """Predict frame t+1 from frames ≤ t: inputs frames[:-1], targets frames[1:]."""
    frames, lengths = rolls.frames, rolls.lengths
    T = frames.shape[1] - 1
    mask = np.arange(T)[None, :] < (lengths[:, None] - 1)
    return Examples(frames[:, :-1], frames[:, 1:], mask, np.maximum(lengths - 1, 0))


def prepare(name: str, batch: int, unroll: int, task_kwargs: dict | None = None, *,
            reset_at_documents: bool = True, examples_as_stream: bool = False) -> Setup:
    """The task's splits as batchers. On the stream tasks the state is carried
    from window to window; `reset_at_documents` also zeroes it where a
    document starts (else it runs on across documents, a lane's start aside).
    `examples_as_stream` feeds arithmetic and memorization as one stream of
    problems (`tasks.base.examples_as_stream`: each problem's whole sequence,
    then the next one's, only the answers scored), cut into windows of `unroll`
    steps like the other stream tasks, instead of one padded row per problem."""
    kw = dict(task_kwargs or {})

    def windows(stream, scored=None):
        return batching.StreamWindows(stream.tokens,
                                      stream.doc_starts if reset_at_documents else None,
                                      batch, unroll, scored)

    if name in ("arithmetic", "memorization"):
        t = task_lib.get(name, **kw)
        if examples_as_stream:  # (these tasks' splits are Examples)
            train, valid, test = (windows(*task_base.examples_as_stream(cast(Examples, e)))
                                  for e in (t.train, t.valid, t.test))
            return Setup(name, "stream", len(t.vocab), len(t.vocab), "tokens", train, valid,
                         test, "accuracy", True)
        return Setup(name, "examples", len(t.vocab), len(t.vocab), "tokens",
                     batching.ExampleBatches(t.train, batch, seed=0),
                     batching.ExampleBatches(t.valid, batch, shuffle=False),
                     batching.ExampleBatches(t.test, batch, shuffle=False), "accuracy", True)
    if name in ("xml", "words"):
        t = task_lib.xml(**kw) if name == "xml" else task_lib.text("word", **kw)
        metric = "accuracy" if name == "xml" else "perplexity"
        return Setup(name, "stream", len(t.vocab), len(t.vocab), "tokens", windows(t.train),
                     windows(t.valid), windows(t.test), metric, name == "xml")
    if name == "music":
        t = task_lib.music(**kw)
        P = len(t.vocab)
        train, valid, test = (cast(Rolls, r) for r in (t.train, t.valid, t.test))
        whole = lambda r: batching.ExampleBatches(
            _rolls_as_examples(r), len(r.lengths), shuffle=False)
        return Setup(name, "rolls", P, P, "features",
                     batching.ExampleBatches(_rolls_as_examples(train),
                                             min(batch, len(train.lengths)), seed=0),
                     whole(valid), whole(test), "nll_per_step", False)
    raise ValueError(f"unknown task {name!r}; expected memorization, arithmetic, xml, words "
                     f"or music")


def prepare_for(preset, name: str) -> Setup:
    """`prepare` with everything a `protocol.Preset` sets for task `name`."""
    return prepare(name, preset.batch, preset.unroll, preset.task_kwargs.get(name),
                   reset_at_documents=preset.reset_at_documents,
                   examples_as_stream=preset.examples_as_stream)


def make_loss(kind: str, model) -> Callable:
    """`loss_fn(params, batch, carry, key) -> (loss, (carry, metrics))` for a
    task of this `kind` ("examples", "stream" or "rolls")."""

    def loss_fn(params, batch, carry, key):
        if kind == "stream":
            carry, out = model.apply(params, batch["inputs"], carry, resets=batch["resets"],
                                     key=key)
        else:
            carry, out = model.apply(params, batch["inputs"], key=key)
            carry = None
        if kind == "rolls":
            return losses.bernoulli_nll(out, batch["targets"], batch["mask"]), (carry, {})
        return losses.softmax_cross_entropy(out, batch["targets"], batch.get("mask")), (carry, {})

    return loss_fn


def make_scores(kind: str, model) -> Callable:
    """`scores(params[M], batches, carry[M]) -> {"nll", "hits", "count"}[M]`:
    every batch of a split (leaves stacked on a leading axis, see
    `stacked_batches`) scored in one jitted call, a `lax.scan` over the batches
    handing the carry along, mapped over the members. `nll` and `hits` are
    sums over the valid positions (divide by `count` for means)."""

    def one(params, carry, batch):
        if kind == "stream":
            carry, out = model.apply(params, batch["inputs"], carry, resets=batch["resets"])
        else:
            _, out = model.apply(params, batch["inputs"])
        mask = batch.get("mask")
        mask = jnp.ones(batch["targets"].shape[:2], bool) if mask is None else mask
        count = jnp.sum(mask)
        if kind == "rolls":
            nll, hits = losses.bernoulli_nll(out, batch["targets"], mask), jnp.zeros(())
        else:
            nll = losses.softmax_cross_entropy(out, batch["targets"], mask)
            hits = losses.accuracy(out, batch["targets"], mask)
        return carry, jnp.stack([nll * count, hits * count, count.astype(nll.dtype)])

    def member(params, batches, carry):
        _, sums = jax.lax.scan(lambda c, b: one(params, c, b), carry, batches)
        nll, hits, count = jnp.sum(sums, axis=0)
        return {"nll": nll, "hits": hits, "count": count}

    return jax.jit(jax.vmap(member, in_axes=(0, None, 0)))


_STACKED: dict[tuple[int, int | None], Any] = {}


def stacked_batches(batches, max_batches: int | None):
    """The first `max_batches` batches of `batches` (all when `None`), stacked
    on a leading axis once per process: the input of `make_scores`."""
    key = (id(batches), max_batches)
    if key not in _STACKED:
        n = len(batches) if max_batches is None else min(len(batches), max_batches)
        _STACKED[key] = (batches, population.stack_batches([batches.batch(i)
                                                            for i in range(n)]))
    return _STACKED[key][1]


def evaluate(setup: Setup, scores: Callable, params, carry, batches,
             max_batches: int | None) -> dict:
    """Metrics per member (`params` and `carry` carry a leading member axis),
    each a mean over the valid positions of the first `max_batches` batches
    (all when `None`); `scores` from `make_scores`. Members spread over several
    processes are gathered: every process gets every member's metrics."""
    sums = population.to_host(scores(params, stacked_batches(batches, max_batches), carry))
    total = np.maximum(np.asarray(sums["count"], np.float64), 1)
    nll = np.asarray(sums["nll"], np.float64) / total
    out = {"nll": nll}
    if setup.kind == "rolls":
        out["nll_per_step"] = nll
    elif setup.name == "words":
        out["perplexity"] = np.exp(nll)
        out["word_probability"] = np.exp(-nll)
    else:
        out["accuracy"] = np.asarray(sums["hits"], np.float64) / total
    return out
