"""`benchmarks.profile_ops` reads compiled HLO correctly: it finds the ops of
the scan's loop body and counts each dot's FLOPs as 2·M·N·K, checked against
the matmuls a tiny recurrax lstm performs per step (written from its
equations: `x W_x` and `h W_h`, each of width 4H)."""

import jax
import jax.numpy as jnp

import recurrax
from benchmarks import profile_ops

T, B, D, H = 5, 3, 4, 6


def test_parse_hlo_finds_the_loop_matmuls():
    cell = recurrax.cells.lstm(H)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.ones((T, B, D))
    fn = jax.jit(lambda p, x: recurrax.scan(cell, p, x, hoist=False)[1])
    hlo = profile_ops.parse_hlo(profile_ops.compiled_hlo(fn, (params, xs)))
    loop_flops = sorted(i["flops"] for i in hlo.values() if i["in_loop"] and i["flops"])
    per_step = sorted([2.0 * B * D * 4 * H, 2.0 * B * H * 4 * H])
    if len(loop_flops) == 1:  # XLA may fuse both matmuls of a step into one
        per_step = [sum(per_step)]
    assert loop_flops == per_step
    assert not any(i["flops"] for i in hlo.values() if not i["in_loop"])
