r"""The backward kernel: one launch runs the adjoint recurrence over all T
steps of a batch tile, in the reverse of the forward order.

Per step it replays the cell's gates from the residuals the forward kernel
saved (the carry entering the step and each recurrent matmul's output `a_t`,
so no forward matmul is made again) and differentiates them; the only
matmuls in the loop are the adjoint's own,

    dh_t += da_t W_kᵀ        for each recurrent matmul a_t = h_t W_k,

with the weights loaded as in the forward kernel. It writes `da_t`, the tap inputs `h_t` and the
prepared inputs' gradient `dpx_t`, and sums the gradients of the biases the
step reads. The weight gradients are not formed in the loop: after it,
`dW_k = Σ_t h_tᵀ da_t` is one GEMM over all `T·batch` rows (`_scan`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from recurrax.kernels import _step
from recurrax.kernels._step import Config


def _replay(config: Config):
    """`replay(h, a, W) = a`: a recurrent matmul whose output `a = h W` was
    saved by the forward kernel; its derivative is the matmul's,
    `dh = da Wᵀ` (and `da` passes through for the weight gradient)."""

    @jax.custom_vjp
    def replay(h, a, W):
        del h, W
        return a

    def replay_fwd(h, a, W):
        del h
        return a, W

    def replay_bwd(W, da):
        dh = _step.dot(da, W, config.matmul_dtype, config.dtype, transpose_b=True)
        return dh, da, None

    replay.defvjp(replay_fwd, replay_bwd)
    return replay


def backward(config: Config, pxs: jax.Array, lengths: jax.Array | None,
             carries_in: list[jax.Array], taps: jax.Array, dys: jax.Array,
             dfinal: list[jax.Array], weights: list[jax.Array],
             others: dict[str, jax.Array]) -> tuple[Any, ...]:
    """`(dpxs, dtaps, hs, dcarry, dothers)`: the gradients of the prepared
    inputs `[T, batch, n_px, H]` and of the recurrent matmuls' outputs
    `[T, batch, M, H]`, each matmul's left factor `hs[k]` `[T, batch, H_in]`,
    the initial carry's leaves, and per tile the sums of the gradients of the
    `others` params (`{name: [tiles, *shape]}`)."""
    plan, T, B, H, dtype = config.plan, config.T, config.batch, config.plan.hidden, config.dtype
    M = len(plan.names)
    names = sorted(others)
    tiles = config.grid[0]
    n_len, n_carry, n_w = (1 if lengths is not None else 0), len(dfinal), len(weights)
    replay = _replay(config)
    in_specs = [_step.tiled(config, pxs.shape, 1),
                *([_step.tiled(config, (B,), 0)] if lengths is not None else []),
                *(_step.tiled(config, c.shape, 1) for c in carries_in),
                _step.tiled(config, taps.shape, 1), _step.tiled(config, dys.shape, 1),
                *(_step.tiled(config, c.shape, 0) for c in dfinal),
                *(_step.whole(w.shape) for w in weights),
                *(_step.whole(others[n].shape) for n in names)]
    out_shape = [jax.ShapeDtypeStruct(pxs.shape, dtype), jax.ShapeDtypeStruct((T, B, M, H), dtype),
                 *(jax.ShapeDtypeStruct((T, B, w), dtype) for w in plan.tap_inputs),
                 *(jax.ShapeDtypeStruct(c.shape, dtype) for c in dfinal),
                 *(jax.ShapeDtypeStruct((tiles, *others[n].shape), dtype) for n in names)]
    out_specs = [_step.tiled(config, pxs.shape, 1), _step.tiled(config, (T, B, M, H), 1),
                 *(_step.tiled(config, (T, B, w), 1) for w in plan.tap_inputs),
                 *(_step.tiled(config, c.shape, 0) for c in dfinal),
                 *(_step.per_tile(others[n].shape) for n in names)]

    def kernel(*refs):
        refs_in, refs_out = refs[:len(in_specs)], refs[len(in_specs):]
        px_ref = refs_in[0]
        len_ref = refs_in[1] if n_len else None
        at = 1 + n_len
        carry_in_refs = refs_in[at: at + n_carry]
        taps_ref, dys_ref = refs_in[at + n_carry], refs_in[at + n_carry + 1]
        at += n_carry + 2
        dfinal_refs = refs_in[at: at + n_carry]
        w_refs = refs_in[at + n_carry: at + n_carry + n_w]
        other_refs = refs_in[at + n_carry + n_w:]
        dpx_ref, dtaps_ref = refs_out[0], refs_out[1]
        hs_refs = refs_out[2: 2 + len(plan.taps)]
        dcarry_refs = refs_out[2 + len(plan.taps): 2 + len(plan.taps) + n_carry]
        dother_refs = refs_out[2 + len(plan.taps) + n_carry:]
        W = _step.weight_loader(config, w_refs)
        loaded = {n: r[...] for n, r in zip(names, other_refs, strict=True)}
        lens = len_ref[...] if len_ref is not None else None

        def body(i, state):
            dleaves, sums = state
            t = _step.time_index(config, i, backward=True)
            carry_t = jax.tree.unflatten(config.carry_tree, [r[t] for r in carry_in_refs])
            px = [px_ref[t, :, j, :].astype(dtype) for j in range(plan.n_px)]
            a = [taps_ref[t, :, m, :] for m in range(M)]

            def replayed(carry, px, a, params):
                hs: list[jax.Array] = []

                def matmul(k, h, slots):
                    hs.append(h)
                    return [replay(h, a[m], W(m)) for m in slots]

                new, y = _step.step(config, params, carry, t, px, lens, matmul)
                return (new, y), hs

            _, vjp, hs = jax.vjp(replayed, carry_t, px, a, loaded, has_aux=True)
            dcarry = jax.tree.unflatten(config.carry_tree, dleaves)
            dcarry_t, dpx, da, dparams = vjp((dcarry, dys_ref[t]))
            for j in range(plan.n_px):
                dpx_ref[t, :, j, :] = dpx[j]
            for m in range(M):
                dtaps_ref[t, :, m, :] = da[m]
            for ref, h in zip(hs_refs, hs, strict=True):
                ref[t] = h.astype(dtype)
            sums = [s + dparams[n].astype(dtype) for s, n in zip(sums, names, strict=True)]
            return [d.astype(dtype) for d in jax.tree.leaves(dcarry_t)], sums

        start = ([r[...].astype(dtype) for r in dfinal_refs],
                 [jnp.zeros(loaded[n].shape, dtype) for n in names])
        dleaves, sums = jax.lax.fori_loop(0, T, body, start)
        for ref, d in zip(dcarry_refs, dleaves, strict=True):
            ref[...] = d
        for ref, s in zip(dother_refs, sums, strict=True):
            ref[...] = s[None]

    args = [pxs, *([lengths] if lengths is not None else []), *carries_in, taps, dys, *dfinal,
            *weights, *(others[n] for n in names)]
    outs = pl.pallas_call(
        kernel, out_shape=out_shape, grid=config.grid, in_specs=in_specs,
        out_specs=out_specs, interpret=config.interpret,
        compiler_params=_step.compiler_params(config), name="recurrax_backward")(*args)
    dpxs, dtaps, *rest = outs
    n_taps = len(plan.taps)
    hs, dcarry, dothers = rest[:n_taps], rest[n_taps: n_taps + n_carry], rest[n_taps + n_carry:]
    return dpxs, dtaps, list(hs), list(dcarry), dict(zip(names, dothers, strict=True))
