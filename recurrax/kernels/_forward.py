r"""The forward kernel: one launch runs all T steps of a batch tile.

Each program (one per tile of `tile` sequences) loads the recurrent weights
once, before its loop over time, and keeps them for all T steps (weights
larger than `_step.RESIDENT_BYTES` are read at every step instead); per step it
reads the prepared inputs `px_t` (the input projections, computed before the
launch as one GEMM), makes the step's recurrent matmuls and gates, and writes
`y_t`. With `residuals` it also writes what the backward kernel needs: the
carry entering each step and every recurrent matmul's output `a_t`, so the
backward pass makes no forward matmul again (cuDNN keeps the same in its
reserve space).
"""

from __future__ import annotations

from typing import Any

import jax
from jax.experimental import pallas as pl

from recurrax.kernels import _step
from recurrax.kernels._step import Config


def forward(config: Config, pxs: jax.Array, lengths: jax.Array | None, carry: list[jax.Array],
            weights: list[jax.Array], others: dict[str, jax.Array], *,
            residuals: bool) -> tuple[Any, ...]:
    """`(ys, final carry leaves)`, plus `(carries_in, taps)` with `residuals`.

    Shapes: `pxs` `[T, batch, n_px, H]`; `lengths` `[batch]` or None; carry
    leaves `[batch, …]`; `weights[m]` `[H_in, H]` for `plan.names[m]`.
    Outputs: `ys` `[T, batch, H]`; `carries_in` the carry leaves entering each
    step, `[T, batch, …]`; `taps` `[T, batch, M, H]` for the M names."""
    plan, T, B, H, dtype = config.plan, config.T, config.batch, config.plan.hidden, config.dtype
    n_len = 1 if lengths is not None else 0
    names = sorted(others)
    n_carry, n_w = len(carry), len(weights)
    out_shape = [jax.ShapeDtypeStruct((T, B, H), dtype),
                 *(jax.ShapeDtypeStruct(c.shape, dtype) for c in carry)]
    out_specs = [_step.tiled(config, (T, B, H), 1),
                 *(_step.tiled(config, c.shape, 0) for c in carry)]
    if residuals:
        M = len(plan.names)
        out_shape += [*(jax.ShapeDtypeStruct((T, *c.shape), dtype) for c in carry),
                      jax.ShapeDtypeStruct((T, B, M, H), dtype)]
        out_specs += [*(_step.tiled(config, (T, *c.shape), 1) for c in carry),
                      _step.tiled(config, (T, B, M, H), 1)]
    in_specs = [_step.tiled(config, pxs.shape, 1),
                *([_step.tiled(config, (B,), 0)] if lengths is not None else []),
                *(_step.tiled(config, c.shape, 0) for c in carry),
                *(_step.whole(w.shape) for w in weights),
                *(_step.whole(others[n].shape) for n in names)]

    def kernel(*refs):
        px_ref = refs[0]
        len_ref = refs[1] if n_len else None
        carry_refs = refs[1 + n_len: 1 + n_len + n_carry]
        w_refs = refs[1 + n_len + n_carry: 1 + n_len + n_carry + n_w]
        other_refs = refs[1 + n_len + n_carry + n_w: len(in_specs)]
        ys_ref, *outs = refs[len(in_specs):]
        final_refs, rest = outs[:n_carry], outs[n_carry:]
        W = _step.weight_loader(config, w_refs)
        loaded = {n: r[...] for n, r in zip(names, other_refs, strict=True)}
        lens = len_ref[...] if len_ref is not None else None

        def body(i, leaves):
            t = _step.time_index(config, i, backward=False)
            px = [px_ref[t, :, j, :].astype(dtype) for j in range(plan.n_px)]
            outs_t: list[jax.Array] = []

            def matmul(k, h, slots):
                a = [_step.dot(h, W(m), config.matmul_dtype, dtype) for m in slots]
                outs_t.extend(a)
                return a

            carry_t = jax.tree.unflatten(config.carry_tree, leaves)
            new, y = _step.step(config, loaded, carry_t, t, px, lens, matmul)
            ys_ref[t] = y.astype(dtype)
            if residuals:
                *carry_in_refs, taps_ref = rest
                for ref, leaf in zip(carry_in_refs, leaves, strict=True):
                    ref[t] = leaf
                for m, a in enumerate(outs_t):
                    taps_ref[t, :, m, :] = a
            return [leaf.astype(dtype) for leaf in jax.tree.leaves(new)]

        start = [r[...].astype(dtype) for r in carry_refs]
        final = jax.lax.fori_loop(0, T, body, start)
        for ref, leaf in zip(final_refs, final, strict=True):
            ref[...] = leaf

    args = [pxs, *([lengths] if lengths is not None else []), *carry, *weights,
            *(others[n] for n in names)]
    return tuple(pl.pallas_call(
        kernel, out_shape=out_shape, grid=config.grid, in_specs=in_specs,
        out_specs=out_specs, interpret=config.interpret,
        compiler_params=_step.compiler_params(config), name="recurrax_forward")(*args))

