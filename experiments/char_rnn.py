"""A character-level language model on Shakespeare (the char-RNN), trained with
truncated BPTT, against the best add-k character n-gram model.

    python -m experiments.char_rnn --preset quick      # under 5 minutes on 2 CPU cores
    python -m experiments.char_rnn --preset full       # the real run
    python -m experiments.char_rnn --preset quick --cell gru --temperature 0.5

The model reads one character at a time, e_t = E[c_t], runs a recurrent cell
over the stream, and predicts the next character with softmax(h_t W + b); the
loss is the mean cross-entropy, reported in bits per character. The stream is
cut into B lanes read in windows of T characters; the carry is handed from
window to window (gradients stop there) and reset where a play begins.

Everything goes to --out (default results/char_rnn/<preset>-<cell>): a
checkpoint after every evaluation, history.jsonl, loss.png and result.json.
Rerunning the same command resumes from the checkpoint (with a larger
--train-steps it trains on); a finished run only evaluates and prints its
result. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import training
from experiments.cli import (
    FRACTION,
    NONNEGATIVE,
    NONNEGATIVE_REAL,
    check_paths,
    history_figure,
    preset_config,
    preset_parser,
)
from experiments.progress import progress_bar
from recurrax import cells, models, tasks, train
from recurrax.metrics import ngram
from recurrax.models import sample
from recurrax.nn import losses
from recurrax.tasks.base import Stream
from recurrax.train import batching, checkpoint
from recurrax.train.results import ResultsFile

PRESETS = {
    "quick": dict(cell="lstm", hidden=256, layers=1, embed=64, batch=32, unroll=64,
                  train_steps=1200, lr=3e-3, clip=5.0, eval_every=200, dropout=0.0),
    "full": dict(cell="lstm", hidden=512, layers=1, embed=64, batch=32, unroll=100,
                 train_steps=3000, lr=2e-3, clip=5.0, eval_every=250, dropout=0.0),
}
EVAL_BATCH, EVAL_UNROLL = 64, 256


def parse_args(argv=None) -> argparse.Namespace:
    parser = preset_parser(__doc__, PRESETS, ranges={"cell": cells.NAMES, "dropout": FRACTION})
    parser.add_argument("--temperature", type=NONNEGATIVE_REAL, default=0.8,
                        help=f"of the sample (0: the most likely character; "
                             f"{NONNEGATIVE_REAL.describe()})")
    parser.add_argument("--sample-length", type=NONNEGATIVE, default=300,
                        help=f"characters sampled after the prompt ({NONNEGATIVE.describe()})")
    args = parser.parse_args(argv)
    config = preset_config(args, PRESETS)
    if config["cell"] in ("mut1", "mut2"):
        config["embed"] = config["hidden"]  # they add x itself to an H-wide sum
    args.config = config
    args.out = args.out or Path("results/char_rnn") / f"{args.preset}-{config['cell']}"
    check_paths(parser, args)
    return args


def build(config: dict, vocab_size: int):
    lm = models.language_model(config["cell"], vocab_size, config["hidden"], config["layers"],
                               embed_size=config["embed"], dropout=config["dropout"])
    opt = train.make_optimizer(config["lr"], clip_norm=config["clip"], base=optax.adam)

    def loss_fn(params, batch, carry, key):
        carry, logits = lm.apply(params, batch["inputs"], carry, resets=batch["resets"], key=key)
        return losses.softmax_cross_entropy(logits, batch["targets"]), (carry, {})

    @jax.jit
    def eval_fn(params, batch, carry):
        carry, logits = lm.apply(params, batch["inputs"], carry, resets=batch["resets"])
        nll = losses.softmax_cross_entropy(logits, batch["targets"])
        return carry, {"nll": nll, "count": batch["targets"].size}

    return lm, opt, train.make_train_step(loss_fn, opt), eval_fn


def bpc(eval_fn, params, stream) -> float:
    windows = batching.StreamWindows(stream.tokens, stream.doc_starts, EVAL_BATCH, EVAL_UNROLL)
    result = train.evaluate(eval_fn, params, windows)
    return float(losses.bits_per_character(result["nll"]))


def ngram_baseline(task, out: Path) -> dict:
    path = out / "ngram.json"
    if path.exists():
        return json.loads(path.read_text())
    r = ngram.fit_ngram(task.train.tokens, task.valid.tokens, task.test.tokens, len(task.vocab))
    result = {"order": r.order, "k": r.k, "valid_bpc": r.valid_bpc, "test_bpc": r.test_bpc}
    path.write_text(json.dumps(result))
    return result


def generate(lm, params, vocab, prompt: str, length: int, temperature: float, seed: int) -> str:
    unk = vocab.index("<unk>") if "<unk>" in vocab else 0
    ids = jnp.array([vocab.index(c) if c in vocab else unk for c in prompt])[:, None]
    carry, _ = lm.apply(params, ids[:-1]) if len(prompt) > 1 else (lm.initial_carry((1,)), None)
    _, tokens = jax.jit(sample.sample, static_argnums=(0, 5), static_argnames="temperature")(
        lm.step, params, carry, ids[-1], jax.random.key(seed), length, temperature=temperature)
    return prompt + "".join(vocab[i] for i in np.asarray(tokens)[:, 0])


def main(argv=None) -> dict:
    args = parse_args(argv)
    config, out = args.config, args.out
    out.mkdir(parents=True, exist_ok=True)
    task = tasks.text("char", cache_dir=args.cache_dir)
    baseline = ngram_baseline(task, out)
    lm, opt, train_step, eval_fn = build(config, len(task.vocab))
    assert isinstance(task.train, Stream)  # text() splits are token streams
    windows = batching.StreamWindows(task.train.tokens, task.train.doc_starts, config["batch"],
                                     config["unroll"])
    state = train.create_train_state(lm.init(jax.random.key(config["seed"])), opt,
                                     carry=lm.initial_carry((config["batch"],)),
                                     seed=config["seed"])
    meta = {"config": config, "seconds": 0.0, "history": [], "plateau": [float("inf"), 1.0, 0]}
    ckpt = out / "checkpoint.msgpack"
    if ckpt.exists():
        try:  # the settings first, then the state
            saved = checkpoint.metadata(ckpt)["config"]
            same = {k: v for k, v in config.items() if k != "train_steps"}
            if {k: v for k, v in saved.items() if k != "train_steps"} != same:
                raise SystemExit(f"{out} holds a run with other settings ({saved}); "
                                 f"pass another --out or delete that folder")
            state, meta = checkpoint.restore(ckpt, state)
        except ValueError as e:  # damaged, or not this model's: refused, never half-loaded
            raise SystemExit(f"{e}; pass another --out or delete that folder") from None
        meta["config"] = config  # a run may be extended with more --train-steps
        print(f"resuming from step {int(state.step)} in {ckpt}")
    plateau = train.Plateau(*map(jnp.asarray, meta["plateau"]))

    def plot() -> None:
        history_figure(meta["history"], "bpc", out / "loss.png", ylabel="bits per character",
                       baseline=(baseline["valid_bpc"], "best add-k n-gram (valid)"),
                       title="char-RNN on Shakespeare")

    desc = f"{config['cell']} {args.preset}"
    with progress_bar(config["train_steps"], initial=int(state.step), desc=desc) as bar:
        loop = training.Loop(state, train_step, windows.batch, steps=config["train_steps"],
                             eval_every=config["eval_every"], bar=bar, weight=0.02,
                             postfix=lambda r: {"loss": f"{r:.3f}", "bpc": f"{r / np.log(2):.3f}"},
                             history=meta["history"], seconds=meta["seconds"],
                             results=ResultsFile(out / "history.jsonl"))
        for step in loop:
            valid = bpc(eval_fn, loop.state.params, task.valid)
            plateau = train.plateau_update(plateau, valid)
            loop.state = loop.state._replace(opt_state=train.set_learning_rate(
                loop.state.opt_state, config["lr"] * plateau.scale))
            lr = config["lr"] * float(plateau.scale)
            loop.record({"train_bpc": loop.running / np.log(2), "valid_bpc": valid, "lr": lr},
                        line=f"step {step}: valid {valid:.3f} bpc, lr {lr:.2g}")
            meta.update(seconds=loop.seconds, plateau=[float(x) for x in plateau])
            checkpoint.save(ckpt, loop.state, meta)
            plot()
    state = loop.state
    plot()
    result = {
        "cell": config["cell"], "preset": args.preset, "steps": int(state.step),
        "train_chars_seen": int(state.step) * config["batch"] * config["unroll"],
        "valid_bpc": round(meta["history"][-1]["valid_bpc"], 4),
        "test_bpc": round(bpc(eval_fn, state.params, task.test), 4),
        "seconds": round(meta["seconds"], 1),
        "params": int(sum(p.size for p in jax.tree.leaves(state.params))),
        "ngram_test_bpc": round(baseline["test_bpc"], 4), "ngram_order": baseline["order"],
        "ngram_k": baseline["k"], "temperature": args.temperature,
        "sample": generate(lm, state.params, list(task.vocab), "ROMEO.\n", args.sample_length,
                           args.temperature, config["seed"]),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(result["sample"])
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
