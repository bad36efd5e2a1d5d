r"""Vanishing and exploding gradients, measured: how far back in time does a
recurrent cell's gradient reach?

    python -m experiments.gradient_flow --preset quick     # seconds on 2 CPU cores
    python -m experiments.gradient_flow --preset full

The maths. One step maps the carry s_t to s_{t+1}; its Jacobian is
J_t = ∂s_{t+1}/∂s_t. For the vanilla RNN, h' = tanh(x W_xh + h W_hh + b_h),
it is J_t = diag(1 − h_{t+1}²) W_hhᵀ, and by the chain rule

    ∂h_T/∂h_t = J_{T−1} ⋯ J_t,        ‖∂h_T/∂h_t‖ ≤ Π_k ‖J_k‖₂ ≤ σ_max(W_hh)^{T−t}.

With W_hh = s·Q (Q orthogonal, every singular value s) and small inputs
(h ≈ 0, tanh' ≈ 1) the product is ≈ (sQᵀ)^{T−t}: its norm is √H·s^{T−t},
vanishing for s < 1 and exploding for s > 1. Large inputs saturate tanh,
diag(1 − h²) shrinks, and the gradient vanishes even for s > 1: σ_max > 1 is
necessary for explosion, not sufficient (Pascanu et al. 2013). The LSTM's
cell path c' = f ⊙ c + i ⊙ g has ∂c'/∂c = diag(f) (plus terms through h),
so with the forget gate near 1 (a large forget bias b_f) the gradient decays
like Π f_k ≈ σ(b_f)^{T−t} instead. Clipping rescales the parameter gradient
g to g·min(1, c/‖g‖₂): an exploded gradient keeps its direction but its norm
is bounded by c.

Each setting runs B sequences of T steps of Gaussian inputs scaled by
`input_scale`, and `recurrax.metrics.gradient_flow.gradient_flow` measures, in one pass,
‖∂h_T/∂h_t‖_F for every t (mean over the B rows). How to read
gradient_flow.png:

* top left, the vanilla RNN, W_hh = s·Q: x is the distance T − t, y (log)
  the Jacobian norm. Straight lines are geometric decay or growth, slope
  log s. The dashed line is s = 1.5 with inputs of scale 1: saturated.
* top right, the LSTM with forget bias b_f ∈ {0, 1, 3, 5} (inputs of scale
  1), against the RNN with its default W_hh (s = 1) on the same inputs.
* bottom left, ‖J_t‖₂ along the trajectory, the per-step factor in the bound.
* bottom right, the parameter gradient's global norm ‖∇_θ L‖ before and after
  `recurrax.train.make_optimizer(clip_norm=...)` (L = ½‖h_T − target‖²,
  mean over rows).

What the quick preset shows (T = 100, H = 32; result.json has the numbers):
for the RNN with inputs ×0.01 the norm at distance 100 is 8e−31 of that at
distance 0 for s = 0.5 (0.5¹⁰⁰: h stays ≈ 0, the network is linear) and
2.5e−5 for s = 0.9 (0.9¹⁰⁰); s = 1 stays level (0.68); s = 1.1 grows 20×
and s = 1.5 ≈ 10⁴×, far less than 1.1¹⁰⁰ ≈ 1.4e4 and 1.5¹⁰⁰ ≈ 4e17. The
state grows like s^t until tanh saturates, so only the first ~15 steps (the
far end of the curve, where the s = 1.5 line turns steeply up) grow ×1.5 a
step; after that the gain-1.5 tanh network is chaotic (Sompolinsky et al.
1988) and the gradient grows only at its largest Lyapunov exponent, about
6 % a step (the full preset, T = 300, reaches 6e9; s = 1.1 settles at 1 %). With inputs of
scale 1 the same s = 1.5 vanishes (1.5e−7) although every ‖J_t‖₂ is still
≈ 1.5 (bottom left): strong inputs saturate tanh, suppress the chaos, and
the per-step bound is loose because the saturated units change from step
to step. At inputs ×1 the RNN with s = 1 and the LSTM with b_f = 0 both fall
to ≈ 1e−20 at distance 100; b_f = 1 to 7e−10, b_f = 3 to 0.12 and b_f = 5
to 0.57: the forget gate σ(b_f) ≈ 0.95 and 0.993 keeps the cell path open
(the whole-state norm, through c, even grows ×8.5 for b_f = 5). Clipping at
1 turns the exploded 10⁴ of s = 1.5 into 1 and leaves gradients already
below 1 alone.

Everything goes to --out (default results/gradient_flow/<preset>):
gradient_flow.png and result.json (the curves too). The last line printed is
one JSON object: per setting `ratio_T` = ‖∂h_T/∂h_0‖_F / ‖∂h_T/∂h_T‖_F (the
norm at distance T over that at distance 0, which is √H), the mean spectral
norm, and the gradient norms unclipped and clipped.
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
from experiments.cli import check_paths, preset_config, preset_parser, pyplot, save_figure
from recurrax import train
from recurrax.metrics.gradient_flow import gradient_flow

PRESETS = {
    "smoke": dict(hidden=8, inputs=4, steps=12, batch=2, small_input=0.01, clip=1.0, x64=False),
    "quick": dict(hidden=32, inputs=8, steps=100, batch=8, small_input=0.01, clip=1.0, x64=False),
    # 0.5^300 ≈ 5e−91 is below float32's range: the full run computes in float64
    "full": dict(hidden=32, inputs=8, steps=300, batch=32, small_input=0.01, clip=1.0, x64=True),
}
SCALES = (0.5, 0.9, 1.0, 1.1, 1.5)  # W_hh = s·Q
FORGET_BIASES = (0.0, 1.0, 3.0, 5.0)


def parse_args(argv=None) -> argparse.Namespace:
    parser = preset_parser(__doc__, PRESETS, cache_dir=False)
    args = parser.parse_args(argv)
    config = preset_config(args, PRESETS)
    args.config = config
    args.out = args.out or Path("results/gradient_flow") / args.preset
    check_paths(parser, args)
    return args


def settings(config: dict):
    """`(name, cell, params, input_scale, group)` for every line of the plot;
    `group` names the top panel it goes in ("rnn" left, "lstm" right)."""
    H, D, rng = config["hidden"], config["inputs"], np.random.default_rng(config["seed"])
    dtype = np.float64 if config["x64"] else np.float32
    rnn, lstm = recurrax.cells.rnn(H), recurrax.cells.lstm(H)
    p_rnn = init(rnn, D, rng, dtype)  # W_hh is orthogonal: s = 1
    for s in SCALES:
        yield f"rnn s={s}", rnn, dict(p_rnn, W_hh=s * p_rnn["W_hh"]), config["small_input"], "rnn"
    yield "rnn s=1.5 x~N(0,1)", rnn, dict(p_rnn, W_hh=1.5 * p_rnn["W_hh"]), 1.0, "rnn"
    yield "rnn s=1.0 x~N(0,1)", rnn, p_rnn, 1.0, "lstm"
    p_lstm = init(lstm, D, rng, dtype)
    for b in FORGET_BIASES:
        yield f"lstm b_f={b:g}", lstm, dict(p_lstm, b_f=np.full(H, b, dtype)), 1.0, "lstm"


def init(cell, D: int, rng: np.random.Generator, dtype) -> dict:
    """The default initialisation drawn in NumPy (cheaper than compiling
    `cell.init`): `W_x* ~ N(0, 1/D)`, each `W_h*` orthogonal, biases 0."""
    def draw(name, shape):
        if name.startswith("W_x"):
            return rng.standard_normal(shape) / np.sqrt(D)
        if name.startswith("W_h"):
            return np.linalg.qr(rng.standard_normal(shape))[0]
        return np.zeros(shape)

    shapes = jax.eval_shape(lambda key: cell.init(key, D), jax.random.key(0))
    return {k: draw(k, v.shape).astype(dtype) for k, v in shapes.items()}


def measure(config: dict) -> dict:
    T, B, H, D = config["steps"], config["batch"], config["hidden"], config["inputs"]
    rng = np.random.default_rng(config["seed"] + 1)
    dtype = np.float64 if config["x64"] else np.float32
    noise = rng.standard_normal((T, B, D)).astype(dtype)
    target = 0.5 * rng.standard_normal((B, H)).astype(dtype)

    def loss(ys, carry):  # L = mean over rows of ½‖h_T − target‖²
        h = jax.tree.leaves(carry)[-1]
        return 0.5 * jnp.mean(jnp.sum((h - target) ** 2, axis=-1))

    opt = train.make_optimizer(1.0, clip_norm=config["clip"])  # sgd, lr 1: update = −clip(g)
    results, grad_norms = {}, {}
    for name, cell, params, scale, group in settings(config):
        xs = scale * noise
        flow = gradient_flow(cell, params, jnp.asarray(xs), loss_fn=loss)
        if cell not in grad_norms:
            grad_norms[cell] = gradient_norms(cell, loss, opt)
        norm, clipped = grad_norms[cell](params, xs)
        results[name] = dict(
            group=group, input_scale=scale,
            jacobian=np.asarray(flow.jacobian_norm).mean(1)[::-1],  # by distance 0 … T
            state_jacobian=np.asarray(flow.state_jacobian_norm).mean(1)[::-1],
            loss_grad=np.asarray(flow.loss_grad_norm).mean(1)[::-1],
            spectral=np.asarray(flow.spectral_norm).mean(1),  # by t = 0 … T−1
            grad_norm=float(norm), clipped_grad_norm=float(clipped))
    return results


def gradient_norms(cell, loss, opt):
    """`(params, xs) -> (‖∇_θ L‖, ‖clip(∇_θ L)‖)`, jitted, through `recurrax.scan`;
    the clipped gradient is `opt`'s update (sgd with learning rate 1)."""
    def objective(params, xs):
        carry, ys = recurrax.scan(cell, params, xs)
        return loss(ys, carry)

    @jax.jit
    def norms(params, xs):
        grads = jax.grad(objective)(params, xs)
        updates, _ = opt.update(grads, opt.init(params), params)
        return optax.tree.norm(grads), optax.tree.norm(updates)

    return norms


def plot(results: dict, path: Path, T: int, clip: float) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    tab20 = plt.get_cmap("tab20")  # dark shades first, then the light ones
    colors = dict(zip(results, [tab20(i) for i in [*range(0, 20, 2), *range(1, 20, 2)]],
                      strict=False))
    distance = np.arange(T + 1)
    for group, ax, title in [("rnn", axes[0, 0], "vanilla RNN, W_hh = s·Q, inputs ×0.01"),
                             ("lstm", axes[0, 1], "LSTM by forget bias, inputs ×1")]:
        for name, r in results.items():
            if r["group"] == group:
                style = "--" if r["input_scale"] == 1.0 and name.startswith("rnn") else "-"
                ax.semilogy(distance, r["jacobian"], style, color=colors[name], label=name)
        ax.set(xlabel="distance back in time T − t", ylabel="‖∂h_T/∂h_t‖_F", title=title)
        ax.legend(fontsize=8)
    ax = axes[1, 0]
    for name, r in results.items():
        ax.plot(np.arange(T), r["spectral"], color=colors[name], label=name, lw=1)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(xlabel="step t", ylabel="‖J_t‖₂ (mean over rows)", yscale="log",
           title="largest singular value of J_t = ∂s_t+1/∂s_t (colours as above)")
    ax = axes[1, 1]
    names = list(results)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [results[n]["grad_norm"] for n in names], 0.4, label="‖∇θ L‖")
    ax.bar(x + 0.2, [results[n]["clipped_grad_norm"] for n in names], 0.4,
           label=f"clipped at {clip:g}")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set(yscale="log", ylabel="global gradient norm", title="gradient clipping")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    config, out = args.config, args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with jax.enable_x64(config["x64"]):
        results = measure(config)
    T = config["steps"]
    plot(results, out / "gradient_flow.png", T, config["clip"])
    summary = {name: dict(ratio_T=_sig(r["jacobian"][T] / r["jacobian"][0]),
                          state_ratio_T=_sig(r["state_jacobian"][T] / r["state_jacobian"][0]),
                          loss_grad_ratio_T=_sig(r["loss_grad"][T] / r["loss_grad"][0]),
                          spectral_mean=_sig(r["spectral"].mean()),
                          grad_norm=_sig(r["grad_norm"]),
                          clipped_grad_norm=_sig(r["clipped_grad_norm"]))
               for name, r in results.items()}
    result = {"preset": args.preset, "T": T, "hidden": config["hidden"], "clip": config["clip"],
              "seconds": round(time.perf_counter() - start, 1), "settings": summary}
    curves = {name: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
              for name, r in results.items()}
    (out / "result.json").write_text(json.dumps({**result, "config": config, "curves": curves},
                                                indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
