r"""The adding problem (Hochreiter and Schmidhuber, 1997) over growing lengths:
feed-forward attention (Raffel and Ellis, 2015) against an LSTM.

    python -m experiments.addition --preset quick      # 2–3 minutes on 2 CPU cores
    python -m experiments.addition --preset full       # paper-sized: many hours on a CPU
    python -m experiments.addition --lengths 50 1000 --models attention lstm+attention

The task (`recurrax.tasks.addition`): a row of ℓ ∈ [T0, 1.1·T0] pairs
x_t = (v_t, m_t), v_t ~ U[−1, 1]; the marker m_t is 1 at one step N1 among the
first ten and at one step N2 in the first half, −1 at the first and the last
step, 0 elsewhere. The target is y = 0.5 + (v_{N1} + v_{N2}) / 4. Loss: the
mean squared error; Adam on a fresh random batch every step, its learning
rate falling from `lr` to lr/20 along a cosine over `steps`.

Every model ends in the same read-out from a summary vector c ∈ R^H,

    s = LReLU(c W_s + b_s),   ŷ = s w_y + b_y          (b_y starts at 0.5, the mean target)

(LReLU with slope 0.01, as in the paper), and they differ in how c is made:

- `attention`, Raffel and Ellis's model: no recurrence at all. Each step is
  embedded on its own, and the steps are averaged with weights that depend on
  the step alone (`recurrax.nn.attention.feed_forward`, A = `attention_size`,
  0 meaning A = H):

      h_t = LReLU(x_t W_x + b_x),   e_t = v · tanh(h_t W_a + b_a),
      α = softmax_t(e),   c = Σ_t α_t h_t

  (The paper scores with e_t = tanh(w · h_t + b); A = 1 is that, times a
  learned scale v.) Nothing has to be carried across time: the model only has
  to learn that marked steps matter.
- `lstm`: an LSTM (`recurrax.cells.lstm`, `forget_bias` added to b_f) read to
  each row's own last step, c = h_ℓ. The first marked value has to survive
  more than ℓ/2 steps of the recurrence, and its gradient has to flow back as
  far.
- `lstm+attention`: the same LSTM, its outputs pooled by feed-forward
  attention, c = Σ_t α_t h_t, so the gradient reaches the marked steps' states
  in one hop.

Padding steps (t >= ℓ) are masked through `lengths`: the LSTM keeps its state
there and attention gives them weight 0. (Raffel and Ellis's code fed the
padded rows unmasked; the −1 end marker was the only sign of the end.)

Sizes: `full` gives every model the paper's H = 100 and batch 100. `quick`
gives the attention model H = 64 but the LSTM H = 32 (`--lstm-hidden`): on a
CPU the LSTM's sequential loop is what costs, and 32 units already give it
about as many parameters as the attention model (the table lists both counts).

Reading the table: one row per (T0, model); all models at one T0 see the same
training batches and the same 1000 held-out sequences. `test MSE` is on the
held-out set after the last step (predicting the mean gives 1/24 ≈ 0.042, the
level of a model that has learned nothing); `MSE < 0.01` is the weaker bar of
Hochreiter and Schmidhuber's training criterion; `correct` is the share of
held-out sequences with |ŷ − y| < 0.04; `solved` is the criterion of Raffel
and Ellis's code, every held-out sequence correct, checked every `chunk` steps;
training stops there and `solved at` gives that step. A model that never gets
there ran all `steps`, and its row shows how far it got. The plot
(addition.png) has one panel per T0: the training MSE (a 25-step running mean
over the fresh batches) against the step, log scale, one line per model, dots
at the held-out evaluations, and the 0.01 and mean-prediction levels.

Everything goes to --out (default results/addition/<preset>): addition.png
and result.json (the table, the config and every curve). The last line
printed is one JSON object: the config, the table and a {model@T0: solved} map.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import recurrax
from experiments import training
from experiments.cli import (
    NONNEGATIVE,
    REAL,
    Range,
    check_paths,
    preset_config,
    preset_parser,
    pyplot,
    save_figure,
)
from experiments.progress import progress_bar
from recurrax import nn, train
from recurrax.nn import attention
from recurrax.tasks import addition as task

MODELS = ("attention", "lstm", "lstm+attention")
PRESETS = {
    "quick": dict(lengths=[50, 100, 200, 500], models=["attention", "lstm"], hidden=64,
                  lstm_hidden=32, attention_size=0, batch=50, steps=400, chunk=100, lr=3e-3,
                  forget_bias=1.0, test_size=1000),
    "full": dict(lengths=[50, 100, 200, 500, 1000], models=list(MODELS), hidden=100,
                 lstm_hidden=100, attention_size=0, batch=100, steps=10000, chunk=500, lr=1e-3,
                 forget_bias=1.0, test_size=1000),
    "smoke": dict(lengths=[12, 20], models=list(MODELS), hidden=8, lstm_hidden=8,
                  attention_size=0, batch=8, steps=4, chunk=2, lr=3e-3, forget_bias=1.0,
                  test_size=16),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = preset_parser(__doc__, PRESETS, cache_dir=False,
                           ranges={"attention_size": NONNEGATIVE, "forget_bias": REAL})
    lengths = Range(int, task.MIN_LENGTH)
    parser.add_argument("--lengths", type=lengths, nargs="+", default=None,
                        help=f"the T0 values (each {lengths.describe()})")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None)
    args = parser.parse_args(argv)
    config = preset_config(args, PRESETS)
    if min(config["lengths"]) < task.MIN_LENGTH:
        parser.error(f"--lengths: every T0 must be at least {task.MIN_LENGTH}, "
                     f"got {config['lengths']}")
    if config["steps"] % config["chunk"]:
        parser.error(f"--steps ({config['steps']}) must be a multiple of --chunk "
                     f"({config['chunk']})")
    args.config = config
    args.out = args.out or Path("results/addition") / args.preset
    check_paths(parser, args)
    return args


def lrelu(x):
    return jax.nn.leaky_relu(x, 0.01)  # Lasagne's leaky_rectify, the paper's nonlinearity


def build(model: str, config: dict):
    """`(init(key) -> params, predict(params, xs, lengths) -> ŷ[B])` for one model."""
    H = config["hidden"] if model == "attention" else config["lstm_hidden"]
    he = jax.nn.initializers.he_normal()
    embed, hidden = nn.dense(H, kernel_init=he), nn.dense(H, kernel_init=he)
    out = nn.dense(1, kernel_init=he, bias_init=jax.nn.initializers.constant(0.5))
    cell = recurrax.cells.lstm(H, forget_bias=config["forget_bias"])
    pool = attention.feed_forward(config["attention_size"] or H)

    def init(key):
        k_hidden, k_out, k_seq, k_pool = jax.random.split(key, 4)
        params = {"hidden": hidden.init(k_hidden, H), "out": out.init(k_out, H)}
        if model == "attention":
            params["embed"] = embed.init(k_seq, 2)
        else:
            params["lstm"] = cell.init(k_seq, 2)
        if model != "lstm":
            params["attention"] = pool.init(k_pool, H)
        return params

    def predict(params, xs, lengths):
        if model == "attention":
            h = lrelu(embed.apply(params["embed"], xs))  # [T, B, H], every step on its own
            c, _ = pool.apply(params["attention"], h, lengths=lengths)
        else:
            (_, h_last), hs = recurrax.scan(cell, params["lstm"], xs, lengths=lengths)
            if model == "lstm":
                c = h_last  # the state after each row's own last step
            else:
                c, _ = pool.apply(params["attention"], hs, lengths=lengths)
        return out.apply(params["out"], lrelu(hidden.apply(params["hidden"], c)))[..., 0]

    return init, predict


def chunk_of_batches(rng: np.random.Generator, n: int, config: dict, T0: int) -> dict:
    """`n` fresh training batches stacked on a leading axis, for `lax.scan`."""
    batches = [task.addition(rng, config["batch"], T0) for _ in range(n)]
    return {"xs": np.stack([b.inputs for b in batches]),
            "ys": np.stack([b.targets for b in batches]),
            "lengths": np.stack([b.lengths for b in batches])}


def optimizer(config: dict) -> optax.GradientTransformation:
    """Adam, its learning rate falling from lr to lr/20 along a cosine over the steps."""
    return optax.adam(optax.cosine_decay_schedule(config["lr"], config["steps"], alpha=0.05))


def initial_state(model: str, config: dict) -> train.TrainState:
    """The model's params and Adam state at step 0 (the same at every T0)."""
    init, _ = build(model, config)
    make = jax.jit(lambda key: train.create_train_state(init(key), optimizer(config),
                                                        seed=config["seed"]))
    return make(jax.random.key(config["seed"]))  # one compile, not one per initialiser op


def run(model: str, T0: int, config: dict, state: train.TrainState, bar) -> dict:
    """Train one model at one length from `state`; evaluate after every chunk,
    stop once solved."""
    _, predict = build(model, config)

    def loss_fn(params, batch, carry, key):
        del key
        err = predict(params, batch["xs"], batch["lengths"]) - batch["ys"]
        return jnp.mean(err ** 2), (carry, {})

    step = train.make_train_step(loss_fn, optimizer(config), jit=False)

    @jax.jit
    def train_chunk(state, batches):  # `chunk` steps in one call
        state, metrics = jax.lax.scan(step, state, batches)
        return state, {"loss": metrics["loss"]}

    evaluate = jax.jit(predict)
    seeds = [config["seed"], T0]  # the same data for every model at this T0
    test = task.addition(np.random.default_rng([*seeds, 1]), config["test_size"], T0)
    rng = np.random.default_rng([*seeds, 0])
    loop = training.Loop(state, train_chunk,
                         lambda _: chunk_of_batches(rng, config["chunk"], config, T0),
                         steps=config["steps"], eval_every=config["chunk"], stride=config["chunk"],
                         bar=bar, postfix=lambda mse: {"T0": T0, "model": model,
                                                       "train_mse": f"{mse:.4f}"})
    evals, solved_at, start = [], None, time.perf_counter()
    for done in loop:
        pred = np.asarray(evaluate(loop.state.params, test.inputs, test.lengths))
        ok = task.correct(pred, test.targets)
        evals.append({"step": done, "test_mse": float(np.mean((pred - test.targets) ** 2)),
                      "correct": float(ok.mean())})
        if ok.all():
            solved_at = done
            bar.update(config["steps"] - done)
            break
    last, losses = evals[-1], loop.values
    return {"T0": T0, "model": model,
            "params": sum(p.size for p in jax.tree.leaves(loop.state.params)),
            "steps": len(losses), "solved_at": solved_at,
            "solved": solved_at is not None, "test_mse": last["test_mse"],
            "correct": last["correct"], "mse_below_0.01": last["test_mse"] < 0.01,
            "seconds": round(time.perf_counter() - start, 1), "train_loss": losses, "evals": evals}


def table(rows: list[dict]) -> str:
    lines = ["| T0 | model | params | test MSE | MSE < 0.01 | correct (abs err < 0.04) | solved "
             "| solved at | steps | s |",
             "| --: | --- | --: | --: | :-: | --: | :-: | --: | --: | --: |"]
    yes = {True: "yes", False: "no"}
    for r in rows:
        lines.append(f"| {r['T0']} | {r['model']} | {r['params']} | {r['test_mse']:.5f} "
                     f"| {yes[r['mse_below_0.01']]} | {100 * r['correct']:.1f}% "
                     f"| {yes[r['solved']]} | {r['solved_at'] or '–'} | {r['steps']} "
                     f"| {r['seconds']} |")
    return "\n".join(lines)


def smooth(values: list[float], width: int) -> np.ndarray:
    width = max(1, min(width, len(values)))
    return np.convolve(values, np.ones(width) / width, mode="valid")


def plot(rows: list[dict], lengths: list[int], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(lengths), figsize=(3.2 * len(lengths), 3.2), sharey=True,
                             squeeze=False)
    colors = dict(zip(MODELS, ["C0", "C3", "C2"], strict=True))
    for ax, T0 in zip(axes[0], lengths, strict=False):
        for r in (r for r in rows if r["T0"] == T0):
            curve = smooth(r["train_loss"], 25)
            ax.plot(np.arange(len(curve)) + len(r["train_loss"]) - len(curve) + 1, curve,
                    color=colors[r["model"]], label=r["model"])
            ax.plot([e["step"] for e in r["evals"]], [e["test_mse"] for e in r["evals"]], ".",
                    color=colors[r["model"]], markersize=3)
        ax.axhline(task.TARGET_VARIANCE, color="gray", linestyle=":", label="predict the mean")
        ax.axhline(0.01, color="gray", linestyle="--", label="MSE 0.01")
        ax.set(yscale="log", xlabel="step", title=f"T0 = {T0}")
    axes[0][0].set_ylabel("MSE (line: train, dots: held-out)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("adding problem: feed-forward attention vs LSTM", fontsize=10)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    config, out = args.config, args.out
    out.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    states = {model: initial_state(model, config) for model in config["models"]}
    total = config["steps"] * len(config["lengths"]) * len(config["models"])
    with progress_bar(total, desc=f"addition {args.preset}") as bar:
        for T0 in config["lengths"]:
            for model in config["models"]:
                rows.append(run(model, T0, config, states[model], bar))
                r = rows[-1]
                bar.write(f"T0={T0} {model}: test MSE {r['test_mse']:.4f}, correct "
                          f"{100 * r['correct']:.1f}%, " + (f"solved at step {r['solved_at']}"
                                                             if r["solved"] else "not solved"))
    plot(rows, config["lengths"], out / "addition.png")
    summary = [{k: v for k, v in r.items() if k not in ("train_loss", "evals")} for r in rows]
    result = {"preset": args.preset, "config": config, "table": summary,
              "seconds": round(time.perf_counter() - start, 1),
              "solved": {f"{r['model']}@{r['T0']}": r["solved"] for r in rows}}
    (out / "result.json").write_text(json.dumps({**result, "curves": rows}, indent=1))
    print(table(rows))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
