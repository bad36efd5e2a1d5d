r"""Sentiment of movie reviews with Flax NNX: a MUT1 layer (`recurrax.nnx.RNN`)
over word embeddings, trained with `nnx.Optimizer` and optax, on the Pang and
Lee polarity reviews (1,000 / 250 / 250, `recurrax.tasks.polarity`).

    python -m experiments.nnx_sentiment                 # the quick preset
    python -m experiments.nnx_sentiment --hidden 32 --train-steps 100

The model reads the ids of a review's last T = max_len words (ℓ ≤ T of them):

    e_t = dropout(E[w_t])                 nnx.Embed, width H: MUT1 needs input size H
    h_t = MUT1(e_t, h_{t−1}),  t < ℓ      recurrax.nnx.RNN(recurrax.cells.mut1(H), H)
    c = (1/ℓ) Σ_{t<ℓ} h_t                 the mean state over the review's words
    s = dropout(c) · u + β                nnx.Linear(H, 1);  p(positive | review) = σ(s)

trained with Adam on the mean logistic loss log(1 + exp(−(2y − 1) s)),
gradients clipped to global norm `clip`. The model kept is the one with the
best validation accuracy (ties: lower validation loss) over evaluations every
`eval_every` steps; its test accuracy is reported. --seed sets the
initialisation, dropout and batch order; the split is always
`recurrax.tasks.polarity`'s fixed one.

result.json goes to --out (default results/nnx_sentiment/<preset>); the last
line printed is the same result as one JSON object. See docs/nnx.md for the
accuracy measured.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import recurrax
import recurrax.nnx
from experiments.cli import FRACTION, check_paths, preset_config, preset_parser
from experiments.sentiment import batch_of, shuffled_rows
from recurrax.tasks import polarity

PRESETS = {
    "quick": dict(max_len=200, min_count=3, hidden=64, batch=32, train_steps=400,
                  eval_every=25, lr=3e-3, clip=5.0, dropout=0.3),
    "full": dict(max_len=400, min_count=3, hidden=96, batch=32, train_steps=1200,
                 eval_every=50, lr=2e-3, clip=5.0, dropout=0.3),
}


class Classifier(nnx.Module):
    """ids [T, B], lengths [B] -> logits s [B] (time-major, as `batch_of` gives)."""

    def __init__(self, vocab_size: int, hidden: int, dropout: float, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab_size, hidden, rngs=rngs)
        self.rnn = recurrax.nnx.RNN(recurrax.cells.mut1(hidden), hidden, time_major=True,
                                    rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, ids: jax.Array, lengths: jax.Array) -> jax.Array:
        hs = self.rnn(self.dropout(self.embed(ids)), lengths=lengths)  # 0 at t >= ℓ
        mean = hs.sum(0) / jnp.maximum(lengths, 1)[:, None]
        return self.out(self.dropout(mean))[:, 0]


def loss_fn(model: Classifier, batch: dict) -> tuple[jax.Array, jax.Array]:
    logits = model(batch["ids"], batch["lengths"])
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch["labels"])), logits


@nnx.jit
def train_step(model: Classifier, optimizer: nnx.Optimizer, batch: dict) -> jax.Array:
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def evaluate(model: Classifier, batch: dict) -> tuple[jax.Array, jax.Array]:
    loss, logits = loss_fn(model, batch)
    return loss, jnp.mean((logits > 0) == (batch["labels"] > 0.5))


def evaluation(model: Classifier, batch: dict) -> tuple[float, float]:
    """(loss, accuracy) in evaluation mode (no dropout)."""
    model.eval()
    loss, accuracy = evaluate(model, batch)
    model.train()
    return float(loss), float(accuracy)


def main(argv=None) -> dict:
    parser = preset_parser(__doc__, PRESETS, ranges={"dropout": FRACTION})
    args = parser.parse_args(argv)
    config = preset_config(args, PRESETS)
    out = args.out = args.out or Path("results/nnx_sentiment") / args.preset
    check_paths(parser, args)  # every argument checked before the data loads
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    splits = polarity.polarity(args.cache_dir)
    vocab = polarity.build_vocab(splits["train"].tokens, config["min_count"])
    data = {}
    for split, reviews in splits.items():
        ids, lengths = polarity.encode(reviews.tokens, vocab, config["max_len"], "last")
        data[split] = {"ids": ids, "lengths": lengths, "labels": reviews.labels}
    whole = {s: batch_of(d, np.arange(len(d["labels"]))) for s, d in data.items()}

    model = Classifier(len(vocab), config["hidden"], config["dropout"],
                       rngs=nnx.Rngs(config["seed"]))
    tx = optax.chain(optax.clip_by_global_norm(config["clip"]), optax.adam(config["lr"]))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    n = len(data["train"]["labels"])
    rows = shuffled_rows(np.random.default_rng(config["seed"]), n, min(config["batch"], n))
    best, best_key, best_step, history = nnx.clone(model), (-1.0, 0.0), 0, []
    for step in range(1, config["train_steps"] + 1):
        loss = float(train_step(model, optimizer, batch_of(data["train"], next(rows))))
        if step % config["eval_every"] and step != config["train_steps"]:
            continue
        valid_loss, valid_accuracy = evaluation(model, whole["valid"])
        history.append({"step": step, "train_loss": round(loss, 4),
                        "valid_loss": round(valid_loss, 4),
                        "valid_accuracy": round(valid_accuracy, 4)})
        print(json.dumps(history[-1]), file=sys.stderr)
        if (valid_accuracy, -valid_loss) > best_key:
            best, best_key, best_step = nnx.clone(model), (valid_accuracy, -valid_loss), step

    _, test_accuracy = evaluation(best, whole["test"])
    result = {
        "preset": args.preset, "split_sizes": [len(splits[s].labels) for s in polarity.SPLITS],
        "vocab": len(vocab), "test_accuracy": round(test_accuracy, 4),
        "valid_accuracy": round(best_key[0], 4), "best_step": best_step,
        "steps_run": config["train_steps"], "history": history,
        "params": sum(p.size for p in jax.tree.leaves(nnx.state(best, nnx.Param))),
        "seconds": round(time.perf_counter() - start, 1), "config": config,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
