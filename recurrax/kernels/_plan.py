"""What a fused kernel needs to know about a cell, learnt by tracing its step
once in gate-block form (`recurrax._blocks`), and the refusals for cells it
cannot fuse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax import _blocks as blocks
from recurrax.protocols import Cell


class Plan(NamedTuple):
    """A cell's structure as the kernels see it.

    `hidden`: H, the width of every gate block. `n_px`: the blocks of the
    prepared input (`prepare` gives `n_px·H` features). `taps`: the names of
    each recurrent matmul the step makes, in call order (`names[m]`, the
    flat list, indexes the per-name tap outputs). `tap_inputs`: the width of
    each matmul's left factor. `others`: the params the step reads directly
    (biases such as the GRU's `b_hh`)."""

    hidden: int
    n_px: int
    taps: tuple[tuple[str, ...], ...]
    tap_inputs: tuple[int, ...]
    others: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for tap in self.taps for name in tap)

    def tap_slots(self, k: int) -> range:
        """The positions in `names` of tap k's blocks."""
        start = sum(len(tap) for tap in self.taps[:k])
        return range(start, start + len(self.taps[k]))


class KernelUnsupported(ValueError):
    """A cell (or an option) the fused kernels cannot run; `recurrax.scan`
    with `kernel=None` falls back to `lax.scan` on it."""


class _ReadLog(dict):
    """A params dict that records which keys the step reads."""

    def __init__(self, items: Mapping[str, Any]):
        super().__init__(items)
        self.read: list[str] = []

    def __getitem__(self, key: str) -> Any:
        if key not in self.read:
            self.read.append(key)
        return super().__getitem__(key)


def plan(cell: Cell, params: Any, px_width: int, carry: Any, batch: int) -> Plan:
    """Trace `cell.step` once on abstract `[batch, H]` gate blocks; raise
    `KernelUnsupported` (naming the reason) for a cell the kernels cannot fuse."""
    H = cell.hidden_size
    where = "recurrax.kernels.scan"
    if not isinstance(params, Mapping):
        raise KernelUnsupported(
            f"{where}: fuses cells whose params are a flat dict (the built-in cells); "
            f"got params of type {type(params).__name__}")
    leaves = [*jax.tree.leaves(params), *jax.tree.leaves(carry)]
    if any(not jnp.issubdtype(jnp.result_type(leaf), jnp.floating) for leaf in leaves):
        raise KernelUnsupported(f"{where}: fuses real floating-point params and carries only")
    if px_width % H:
        raise KernelUnsupported(
            f"{where}: the cell's prepare gives {px_width} features, not a multiple of its "
            f"hidden size {H}, so its gates are not H-wide blocks")
    taps: list[tuple[str, ...]] = []
    tap_inputs: list[int] = []

    def matmul(params, h, names):
        for name in names:
            if name not in params or tuple(params[name].shape) != (h.shape[-1], H):
                shape = tuple(params[name].shape) if name in params else None
                raise KernelUnsupported(
                    f"{where}: a recurrent matmul's weights {name!r} must be "
                    f"({h.shape[-1]}, {H}) (one H-wide gate block each), got {shape}")
        taps.append(tuple(names))
        tap_inputs.append(h.shape[-1])
        return blocks.as_blocks([jnp.zeros((*h.shape[:-1], H), h.dtype) for _ in names])

    log = _ReadLog(params)

    def probe(carry):
        px = blocks.as_blocks([jnp.zeros((batch, H), jnp.float32)] * (px_width // H))
        with blocks.kernel_mode(matmul):
            return cell.step(log, carry, px)

    try:
        out_carry, y = jax.eval_shape(probe, carry)
    except KernelUnsupported:
        raise
    except TypeError as error:
        raise KernelUnsupported(
            f"{where}: the cell's step uses its fused gates in a way a kernel cannot split "
            f"({error})") from None
    if not taps:
        raise KernelUnsupported(
            f"{where}: the cell's step makes no recurrent matmul marked with "
            f"recurrax.cells.recurrent_matmul, so there is nothing for a kernel to fuse")
    if isinstance(y, blocks.GateBlocks) or tuple(y.shape) != (batch, H):
        raise KernelUnsupported(f"{where}: the step's output must be one [batch, {H}] array")
    del out_carry
    tap_names = {name for tap in taps for name in tap}
    others = tuple(name for name in log.read if name not in tap_names)
    return Plan(H, px_width // H, tuple(taps), tuple(tap_inputs), others)
