"""recurrax.scan(lstm) against flax.linen.RNN(OptimizedLSTMCell), forward +
backward, timed side by side in one process, plus the matmul limit: the same
matmuls with the time dependency removed.

    python -m benchmarks.lstm_vs_flax [--batch 64 --steps 256 --inputs 256 --hidden 512]

Prints one JSON line with tokens/s (batch × steps per second, median of
interleaved rounds), GFLOP/s, the ratio recurrax/Flax and the fraction of the
limit.
"""

from __future__ import annotations

import argparse
import json
import platform

import flax.linen as nn
import jax
import jax.numpy as jnp

import recurrax
from benchmarks.timing import interleaved_medians, lstm_flops, median


def build(B: int, T: int, D: int, H: int, hoist):
    key = jax.random.key(0)
    xs_bm = jax.random.normal(key, (B, T, D))
    xs_tm = jnp.swapaxes(xs_bm, 0, 1)

    cell = recurrax.cells.lstm(H)
    params = cell.init(key, D)

    @jax.jit
    def ours(params, xs):
        def loss(params):
            return jnp.sum(recurrax.scan(cell, params, xs, hoist=hoist)[1])
        return jax.value_and_grad(loss)(params)

    flax_rnn = nn.RNN(nn.OptimizedLSTMCell(H))
    flax_params = flax_rnn.init(key, xs_bm)

    @jax.jit
    def flax(params, xs):
        return jax.value_and_grad(lambda p: jnp.sum(flax_rnn.apply(p, xs)))(params)

    # The limit: one GEMM for all input projections, one for all recurrent
    # projections (the h's of every step at once), same shapes as the LSTM.
    Wx = jax.random.normal(key, (D, 4 * H)) * 0.01
    Wh = jax.random.normal(key, (H, 4 * H)) * 0.01
    hs = jax.random.normal(key, (T * B, H))

    @jax.jit  # gradients for what the LSTM's backward needs: weights and h's, not xs
    def limit(Wx, Wh, xs, hs):
        def loss(Wx, Wh, xs, hs):
            return jnp.sum(jnp.tanh(xs.reshape(-1, D) @ Wx + hs @ Wh))
        return jax.value_and_grad(loss, argnums=(0, 1, 3))(Wx, Wh, xs, hs)

    return {
        "recurrax": lambda: ours(params, xs_tm),
        "flax": lambda: flax(flax_params, xs_bm),
        "limit": lambda: limit(Wx, Wh, xs_tm, hs),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hoist", choices=["auto", "true", "false"], default="auto")
    args = parser.parse_args(argv)
    B, T, D, H = args.batch, args.steps, args.inputs, args.hidden
    hoist = {"auto": None, "true": True, "false": False}[args.hoist]
    times = interleaved_medians(build(B, T, D, H, hoist), rounds=args.rounds)
    flops = lstm_flops(B, T, D, H, backward=True)
    result = {
        "shape": {"B": B, "T": T, "D": D, "H": H}, "pass": "forward+backward",
        "hoist": args.hoist, "device": jax.devices()[0].device_kind,
        "machine": platform.machine(), "jax": jax.__version__,
    }
    for name, ts in times.items():
        result[f"{name}_tokens_per_s"] = round(B * T / median(ts))
        result[f"{name}_gflops"] = round(flops / median(ts) / 1e9, 1)
    result["recurrax_over_flax"] = round(median(times["flax"]) / median(times["recurrax"]), 3)
    result["recurrax_fraction_of_limit"] = round(median(times["limit"]) / median(times["recurrax"]), 3)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
