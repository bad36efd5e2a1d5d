r"""Training through the parallel-in-time evaluator: a GRU on the adding problem
trained twice from the same seed, once with the sequential scan and once with
`recurrax.parallel` (quasi-DEER), to see that the two give the same training.

    python -m experiments.parallel_in_time --preset quick   # 1.5 minutes on 2 CPU cores
    python -m experiments.parallel_in_time --preset full    # T0 = 2000, H = 64: hours on a CPU
    python -m experiments.parallel_in_time --method deer --length 200 --steps 100

The task (`recurrax.tasks.addition`, the adding problem): rows of ℓ ∈ [T0,
1.1·T0] pairs (v_t, m_t); the target is 0.5 + (v_{N1} + v_{N2}) / 4, the two
values marked by m = 1, the first within the first ten steps. Predicting the
mean target gives MSE 1/24 ≈ 0.042. The model reads the row with a GRU
(`recurrax.cells.gru`) to its own last step (`lengths`) and outputs
ŷ = h_ℓ w + b (b starts at 0.5); the loss is the mean squared error, Adam
with the learning rate falling from `lr` to lr/20 along a cosine.
`keep_bias` is added to the update gate's bias b_z at the start: the GRU
keeps z = σ(b_z + …) of its state each step, so a positive value starts it
with a longer memory (λ̂ nearer 0).

The two runs start from the same params, see the same batches (batch s is
drawn from the seed and s) and differ only in how the recurrence
h_t = GRU(h_{t−1}, x_t) is evaluated:

- `sequential`: `recurrax.scan`, T dependent steps; gradients by
  backpropagation through time.
- `parallel`: `recurrax.parallel.solve(method=...)`, all T states solved for
  at once by Newton-type iterations, each one associative scan, until the
  scaled residual max_t |h_t − GRU(h_{t−1}, x_t)| / (1 + |·|) is below the
  tolerance (about 1.2e-5 in float32); gradients by implicit differentiation.
  If the iterations do not converge the step falls back to the sequential
  loop (`on_failure="sequential"`); those steps are counted.

Recorded for every training step: both losses and their difference, the
Newton iterations of the parallel forward solve and whether it converged; at
every evaluation (every `chunk` steps, and step 0): the held-out MSE of both
runs and the largest Lyapunov exponent λ̂ of both runs' GRU along
`probe` fixed-length sequences (`recurrax.metrics.lyapunov`, the mean over
them). λ̂ < 0: the GRU forgets, perturbations of h die within about 1/|λ̂|
steps, and the Newton iterations converge in far fewer than T steps; a GRU
that learned to hold the first marked value for hundreds of steps would have
λ̂ near 0.

Reading the results: the losses of the two runs agree to about the solve's
tolerance, and stay so: the runs are two optimisations whose params differ
only by the accumulated solve error. The quick preset (measured, 87 s): the
largest |loss_seq − loss_par| over 200 steps was 2.0e-7 (relative 6e-6), the
held-out MSE 0.04890 for both, 14–15 iterations per step for T ≈ 1000, λ̂
−0.34 to −0.35 throughout (200 steps at T0 = 1000 do not teach the GRU the
task: both stay near the 1/24 of predicting the mean). With `--keep-bias 3
--lr 0.01 --steps 400`: λ̂ −0.03, yet 10 iterations per step (the Jacobian is
then nearly the diagonal 0.95·I, which quasi-DEER takes exactly), the
largest difference 3.4e-6. `loss.png` has four panels: both training losses
(a 10-step running mean), |loss_seq − loss_par| per step, the Newton
iterations per step, and λ̂ at the evaluations.

Everything goes to --out (default results/parallel_in_time/<preset>):
history.jsonl (one record per run and evaluation, written as it goes), a
checkpoint of both runs after every evaluation (rerunning the same command
resumes from it; a finished run only writes its result), loss.png and
result.json (the config, the summary and every curve). The last line
printed is one JSON object: the config and the summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import recurrax
from experiments import training
from experiments.cli import (
    REAL,
    Range,
    check_paths,
    preset_config,
    preset_parser,
    pyplot,
    save_figure,
)
from experiments.progress import progress_bar
from recurrax import nn, parallel, train
from recurrax.metrics.lyapunov import largest_lyapunov_exponent
from recurrax.tasks import addition as task
from recurrax.train import checkpoint
from recurrax.train.results import ResultsFile

RUNS = ("sequential", "parallel")
PRESETS = {
    "quick": dict(length=1000, hidden=16, batch=16, steps=200, chunk=25, lr=3e-3,
                  keep_bias=0.0, method="quasi-deer", test_size=200, probe=8),
    "full": dict(length=2000, hidden=64, batch=32, steps=2000, chunk=100, lr=2e-3,
                 keep_bias=0.0, method="quasi-deer", test_size=1000, probe=16),
    "smoke": dict(length=20, hidden=4, batch=4, steps=4, chunk=2, lr=3e-3,
                  keep_bias=0.0, method="quasi-deer", test_size=8, probe=2),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = preset_parser(__doc__, PRESETS, cache_dir=False,
                           ranges={"length": Range(int, task.MIN_LENGTH), "keep_bias": REAL,
                                   "method": parallel.METHODS})
    args = parser.parse_args(argv)
    args.config = config = preset_config(args, PRESETS)
    if config["steps"] % config["chunk"]:  # every chunk is one jitted call of `chunk` steps
        parser.error(f"--steps ({config['steps']}) is not a multiple of --chunk "
                     f"({config['chunk']})")
    args.out = args.out or Path("results/parallel_in_time") / args.preset
    check_paths(parser, args)
    return args


def build(config: dict):
    """`(init(key) -> params, predict(params, xs, lengths, run) -> (ŷ[B], info))`;
    `info` is the parallel solve's `(iterations, converged)` (zeros and True
    for the sequential run)."""
    H = config["hidden"]
    cell = recurrax.cells.gru(H)
    out = nn.dense(1, bias_init=jax.nn.initializers.constant(0.5))

    def init(key):
        k_cell, k_out = jax.random.split(key)
        gru = cell.init(k_cell, 2)
        gru["b_z"] = gru["b_z"] + config["keep_bias"]
        return {"gru": gru, "out": out.init(k_out, H)}

    def predict(params, xs, lengths, run):
        if run == "sequential":
            h, _ = recurrax.scan(cell, params["gru"], xs, lengths=lengths)
            info = (jnp.zeros((), jnp.int32), jnp.ones((), bool))
        else:
            h, _, solved = parallel.solve(cell, params["gru"], xs, lengths=lengths,
                                          method=config["method"])
            info = (solved.iterations, solved.parallel)
        return out.apply(params["out"], h)[..., 0], info

    return cell, init, predict


def optimizer(config: dict) -> optax.GradientTransformation:
    """Adam, its learning rate falling from lr to lr/20 along a cosine over the steps."""
    return optax.adam(optax.cosine_decay_schedule(config["lr"], config["steps"], alpha=0.05))


def batches(config: dict, start: int) -> dict:
    """The `chunk` training batches from step `start`, stacked: batch s comes
    from the seed and s alone, so both runs (and a resumed run) see the same."""
    drawn = [task.addition(np.random.default_rng([config["seed"], 0, s]), config["batch"],
                           config["length"]) for s in range(start, start + config["chunk"])]
    return {"xs": np.stack([b.inputs for b in drawn]), "ys": np.stack([b.targets for b in drawn]),
            "lengths": np.stack([b.lengths for b in drawn])}


def train_chunk(config: dict, predict, run: str):
    """`chunk` steps of one run in one jitted call; per step the loss, the
    Newton iterations and whether the parallel solve converged."""
    def loss_fn(params, batch, carry, key):
        del key
        pred, (iterations, converged) = predict(params, batch["xs"], batch["lengths"], run)
        loss = jnp.mean((pred - batch["ys"]) ** 2)
        return loss, (carry, {"iterations": iterations, "converged": converged})

    step = train.make_train_step(loss_fn, optimizer(config), jit=False)

    @jax.jit
    def chunk(state, stacked):
        state, metrics = jax.lax.scan(step, state, stacked)
        return state, {k: metrics[k] for k in ("loss", "iterations", "converged")}

    return chunk


def plot(curves: dict, evals: list[dict], method: str, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    steps = np.arange(1, len(curves["sequential"]) + 1)
    for run, color, style in zip(RUNS, ("C0", "C3"), ("o-", "x--"), strict=True):
        width = min(10, len(curves[run]))  # the parallel run dashed: the two lie on each other
        smooth = np.convolve(curves[run], np.ones(width) / width, mode="valid")
        axes[0].plot(steps[width - 1:], smooth, style[1:], color=color,
                     label=run if run == "sequential" else f"parallel ({method})")
        axes[3].plot([e["step"] for e in evals], [e[f"lyapunov_{run}"] for e in evals], style,
                     color=color, label=run)
    axes[0].axhline(task.TARGET_VARIANCE, color="gray", linestyle=":", label="predict the mean")
    axes[0].set(yscale="log", xlabel="step", ylabel="training MSE (10-step mean)")
    diff = np.abs(np.subtract(curves["sequential"], curves["parallel"]))
    axes[1].plot(steps, np.maximum(diff, 1e-12), color="k", linewidth=0.8)
    axes[1].set(yscale="log", xlabel="step", ylabel="|loss_seq − loss_par| (0 drawn at 1e-12)")
    axes[2].plot(steps, curves["iterations"], color="C2", linewidth=0.8)
    fell = [s for s, ok in zip(steps, curves["converged"], strict=True) if not ok]
    if fell:
        axes[2].plot(fell, [curves["iterations"][s - 1] for s in fell], "x", color="C3",
                     label="not converged (fell back)")
        axes[2].legend(fontsize=7)
    axes[2].set(xlabel="step", ylabel="Newton iterations (forward)")
    axes[3].axhline(0, color="gray", linestyle=":")
    axes[3].set(xlabel="step", ylabel="largest Lyapunov exponent λ̂")
    axes[0].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    fig.suptitle("GRU on the adding problem: sequential scan vs parallel-in-time", fontsize=10)
    save_figure(fig, path)


def summary(curves: dict, evals: list[dict], seconds: dict) -> dict:
    diff = np.abs(np.subtract(curves["sequential"], curves["parallel"]))
    rel = diff / np.maximum(np.abs(curves["sequential"]), 1e-30)
    last = evals[-1]
    return {"steps": len(diff), "first_loss_diff": float(diff[0]) if len(diff) else None,
            "max_abs_loss_diff": float(diff.max()), "max_rel_loss_diff": float(rel.max()),
            "final_loss": {r: curves[r][-1] for r in RUNS},
            "test_mse": {r: last[f"test_mse_{r}"] for r in RUNS},
            "iterations": {"mean": float(np.mean(curves["iterations"])),
                           "min": int(np.min(curves["iterations"])),
                           "max": int(np.max(curves["iterations"]))},
            "not_converged_steps": int(np.sum(~np.asarray(curves["converged"], bool))),
            "lyapunov": {r: [evals[0][f"lyapunov_{r}"], last[f"lyapunov_{r}"]] for r in RUNS},
            "seconds": {r: round(seconds[r], 1) for r in RUNS}}


def main(argv=None) -> dict:
    args = parse_args(argv)
    config, out = args.config, args.out
    out.mkdir(parents=True, exist_ok=True)
    cell, init, predict = build(config)
    params = jax.jit(init)(jax.random.key(config["seed"]))
    states = {run: train.create_train_state(params, optimizer(config), seed=config["seed"])
              for run in RUNS}
    meta = {"config": config, "seconds": {r: 0.0 for r in RUNS}, "history": {r: [] for r in RUNS},
            "curves": {"sequential": [], "parallel": [], "iterations": [], "converged": []},
            "evals": []}
    ckpt = out / "checkpoint.msgpack"
    if ckpt.exists():
        try:  # the settings first, then the states
            saved = checkpoint.metadata(ckpt)["config"]
            if saved != config:
                raise SystemExit(f"{out} holds a run with other settings ({saved}); "
                                 f"pass another --out or delete that folder")
            states, meta = checkpoint.restore(ckpt, states)
        except ValueError as e:  # damaged, or not this model's: refused, never half-loaded
            raise SystemExit(f"{e}; pass another --out or delete that folder") from None
        print(f"resuming from step {int(states['parallel'].step)} in {ckpt}")
    curves, evals = meta["curves"], meta["evals"]

    test = task.addition(np.random.default_rng([config["seed"], 1]), config["test_size"],
                         config["length"])
    probe = task.addition(np.random.default_rng([config["seed"], 2]), config["probe"],
                          config["length"], config["length"]).inputs
    probe = jnp.asarray(probe)
    test_pred = jax.jit(lambda p: predict(p, test.inputs, test.lengths, "sequential")[0])

    def evaluate(run: str) -> dict:
        p = loops[run].state.params
        return {f"test_mse_{run}": float(jnp.mean((test_pred(p) - test.targets) ** 2)),
                f"lyapunov_{run}": float(jnp.mean(largest_lyapunov_exponent(cell, p["gru"],
                                                                             probe)))}

    results = ResultsFile(out / "history.jsonl")
    last: dict[str, dict] = {}  # the metrics of each run's last chunk

    def stepper(run: str):
        chunk = train_chunk(config, predict, run)

        def advance(state, stacked):
            state, metrics = chunk(state, stacked)
            last[run] = jax.device_get(metrics)
            return state, metrics
        return advance

    n = config["chunk"]
    with progress_bar(2 * config["steps"], initial=2 * int(states["parallel"].step),
                      desc=f"parallel_in_time {args.preset}") as bar:
        loops = {run: training.Loop(states[run], stepper(run),
                                    lambda step: batches(config, step), steps=config["steps"],
                                    eval_every=n, stride=n, bar=bar,
                                    postfix=lambda r: {"loss": f"{r:.4f}"},
                                    history=meta["history"][run], results=results,
                                    seconds=meta["seconds"][run])
                 for run in RUNS}
        if not evals:
            evals.append({"step": 0, **evaluate("sequential"), **evaluate("parallel")})
        parallel_steps = iter(loops["parallel"])
        for step in loops["sequential"]:  # one chunk of each run in turn, timed apart
            record = {"step": step}
            for run in RUNS:
                if run == "parallel" and next(parallel_steps) != step:
                    raise RuntimeError("the two runs fell out of step")  # cannot happen
                losses = loops[run].values[-n:]
                curves[run] += losses
                fields = evaluate(run)
                extra = {}
                if run == "parallel":
                    extra = {k: np.asarray(last[run][k]).tolist()
                             for k in ("iterations", "converged")}
                    curves["iterations"] += extra["iterations"]
                    curves["converged"] += extra["converged"]
                loops[run].record({"run": run, "losses": losses, **extra,
                                   "test_mse": fields[f"test_mse_{run}"],
                                   "lyapunov": fields[f"lyapunov_{run}"]})
                record.update(fields)
            evals.append(record)
            diff = np.abs(np.subtract(curves["sequential"][-n:], curves["parallel"][-n:]))
            bar.write(f"step {step}: loss seq {curves['sequential'][-1]:.5f} par "
                      f"{curves['parallel'][-1]:.5f} (max |Δ| {diff.max():.2g}), iterations "
                      f"{np.mean(curves['iterations'][-n:]):.1f}, λ̂ seq "
                      f"{record['lyapunov_sequential']:+.3f} par "
                      f"{record['lyapunov_parallel']:+.3f}, test MSE "
                      f"{record['test_mse_sequential']:.4f} / {record['test_mse_parallel']:.4f}")
            meta["seconds"] = {run: loops[run].seconds for run in RUNS}
            checkpoint.save(ckpt, {run: loops[run].state for run in RUNS}, meta)
            plot(curves, evals, config["method"], out / "loss.png")
    plot(curves, evals, config["method"], out / "loss.png")
    result = {"preset": args.preset, "config": config,
              "summary": summary(curves, evals, meta["seconds"])}
    (out / "result.json").write_text(json.dumps({**result, "curves": curves, "evals": evals},
                                                indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
