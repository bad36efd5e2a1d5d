"""Measure the levers of issue 5 that live in the program (not in XLA's flags,
see `benchmarks.xla_flags`) on `lstm` forward+backward (gradients for the
params and the inputs) at the three reference shapes, each variant timed
round-robin with recurrax's default and PyTorch `nn.LSTM` in one process:

- `autodiff in loop`: JAX's own differentiation of the loop, every weight
  gradient accumulated inside it (`scan(weight_grads="in_loop")`; the
  default before the recurrent weights' gradients moved after the loop);
- `remat`: `scan(remat=True)`, the checkpoint policy that saves nothing;
- `checkpoint dots`: the step under `jax.checkpoint(policy=dots_saveable)`,
  which keeps the matmul outputs and recomputes the cheap elementwise parts;
- `stacked carry`: the carry `(c, h)` held as one `[B, 2, H]` array;
- `fused x|h matmul`: one matmul `[x | h] [W_x; W_h]` per step in place of
  the input and recurrent ones;
- `hand-written backward`: a backward pass written out for the lstm, whose
  loop computes only the gate gradients, all weight and input gradients after
  it, and whose forward saves only `h`, `c` and the gates
  (`benchmarks.lstm_deferred_grad`).

    python -m benchmarks.levers [--rounds 5]

Prints a Markdown table (tokens/s, and in brackets the speed over recurrax's
default) and one JSON line per shape.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

import recurrax
from benchmarks import lstm_deferred_grad, peers
from benchmarks.timing import interleaved_medians, median

SHAPES = ((1, 512, 128, 256), (32, 128, 128, 256), (64, 256, 256, 512))  # B, T, D, H


def stacked_carry(cell: recurrax.Cell) -> recurrax.Cell:
    """`cell` (an lstm) with its carry `(c, h)` stored as one array `[*batch, 2, H]`
    (the batch axes first, as the Cell protocol requires of every carry array)."""
    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return jnp.zeros((*tuple(batch_shape), 2, cell.hidden_size), dtype)

    def step(params, carry, px):
        (c, h), y = cell.step(params, (carry[..., 0, :], carry[..., 1, :]), px)
        return jnp.stack([c, h], axis=-2), y

    return cell._replace(initial_carry=initial_carry, step=step)


def fused_matmul_lstm(H: int) -> recurrax.Cell:
    """The lstm with `prepare` the identity and one matmul per step,
    `[x | h] [W_x; W_h] + b` (same params and numbers as `cells.lstm(H)`)."""
    base = recurrax.cells.lstm(H)

    def step(params, carry, x):
        c, h = carry
        Wx, Wh, b = lstm_deferred_grad.fused_params(params)
        pre = jnp.concatenate([x, h], axis=-1) @ jnp.concatenate([Wx, Wh]) + b
        i, f, g, o = jnp.split(pre, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    return base._replace(prepare=lambda params, xs: xs, step=step)


def _scan_apply(cell, **scan_kw):
    return lambda params, xs: recurrax.scan(cell, params, xs, **scan_kw)[1]


def variants(H: int) -> dict:
    """name -> apply(params, xs) -> ys, for recurrax lstm(H)'s params."""
    cell = recurrax.cells.lstm(H)
    dots = jax.checkpoint(cell.step, policy=jax.checkpoint_policies.dots_saveable)
    return {
        "recurrax": _scan_apply(cell),
        "autodiff in loop": _scan_apply(cell, weight_grads="in_loop"),
        "remat": _scan_apply(cell, remat=True),
        "checkpoint dots": _scan_apply(cell._replace(step=dots)),
        "stacked carry": _scan_apply(stacked_carry(cell)),
        "fused x|h matmul": _scan_apply(fused_matmul_lstm(H)),
        "hand-written backward": lambda params, xs: lstm_deferred_grad.lstm(
            *lstm_deferred_grad.fused_params(params), xs),
    }


def thunks(shape: peers.Shape) -> dict:
    apply_fns = variants(shape.H)
    _, params, xs = peers.jax_parts("recurrax", "lstm", shape, jnp.float32)
    out = {}
    for name, apply in apply_fns.items():
        fn = jax.jit(peers.loss_and_grad(apply))
        out[name] = lambda fn=fn: fn(params, xs)
    out["torch"] = peers.build("torch", "lstm", shape, "float32", backward=True)
    return out


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for B, T, D, H in SHAPES:
        shape = peers.Shape(B, T, D, H)
        times = interleaved_medians(thunks(shape), rounds=args.rounds)
        speed = {name: B * T / median(ts) for name, ts in times.items()}
        rows.append({"B": B, "T": T, "D": D, "H": H,
                     **{f"{k}_tokens_per_s": round(v) for k, v in speed.items()}})
    names = [k.removesuffix("_tokens_per_s") for k in rows[0] if k.endswith("_tokens_per_s")]
    print("lstm forward+backward, tokens/s; in brackets, over recurrax's default "
          f"(median of {args.rounds}, round-robin per shape)")
    print("| variant | " + " | ".join(f"{r['B']}, {r['T']}, {r['D']}, {r['H']}" for r in rows)
          + " |\n| --- |" + " --- |" * len(rows))
    for name in names:
        print(f"| {name} | " + " | ".join(
            f"{r[name + '_tokens_per_s'] / 1e3:.1f}k "
            f"({r[name + '_tokens_per_s'] / r['recurrax_tokens_per_s']:.2f})" for r in rows) + " |")
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
