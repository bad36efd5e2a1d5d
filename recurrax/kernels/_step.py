"""The pieces both kernels share: the launch settings (`Config`), the block
specs over batch tiles, the step traced in gate-block form, and the matmuls
with their precision rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
from jax.experimental import pallas as pl

from recurrax import _blocks as blocks
from recurrax.kernels._plan import Plan
from recurrax.protocols import Cell
from recurrax.scan import _masked_step


class Config(NamedTuple):
    """Static settings of one kernel launch: the cell and its `Plan`; the
    time steps `T`, the padded batch `batch` and the batch tile `tile` (one
    program per tile); the loop direction; whether `lengths` are given; the
    dtype of the matmuls' operands (`matmul_dtype`) and of everything else
    (`dtype`); the carry's tree; and Pallas's interpreter or the GPU."""

    cell: Cell
    plan: Plan
    T: int
    batch: int
    tile: int
    reverse: bool
    has_lengths: bool
    matmul_dtype: Any
    dtype: Any
    carry_tree: Any
    interpret: bool
    resident: bool

    @property
    def grid(self) -> tuple[int]:
        return (self.batch // self.tile,)


def dot(a: jax.Array, b: jax.Array, matmul_dtype: Any, dtype: Any, *,
        transpose_b: bool = False) -> jax.Array:
    """`a @ b` (or `a @ bᵀ`) with both operands rounded to `matmul_dtype` and
    the products accumulated in `dtype`; full precision for float32 operands
    (no TF32 on the GPU)."""
    dims = (((1,), (1 if transpose_b else 0,)), ((), ()))
    return jax.lax.dot_general(
        a.astype(matmul_dtype), b.astype(matmul_dtype), dims,
        precision=jax.lax.Precision.HIGHEST, preferred_element_type=dtype)


#: Recurrent weights up to this many bytes per program are loaded once, before
#: the loop over time; larger ones at every step. A guess, not a measurement
#: (docs/performance.md): a GPU's register file is 256 KiB per SM, shared
#: memory up to 228 KiB, and the gates and tiles need room too.
RESIDENT_BYTES = 64 * 1024


def weight_loader(config: Config, refs: Sequence[Any]) -> Callable[[int], jax.Array]:
    """`load(m)`: the m-th recurrent weight. Called inside the loop over time,
    it reads the weight there unless the weights are `resident`, read here,
    once, before the loop."""
    if not config.resident:
        return lambda m: refs[m][...]
    loaded = [ref[...] for ref in refs]
    return lambda m: loaded[m]


def tiled(config: Config, shape: Sequence[int], batch_axis: int) -> pl.BlockSpec:
    """A block over one batch tile of an array of `shape` whose batch axis is
    `batch_axis` (all of every other axis)."""
    block = [config.tile if i == batch_axis else s for i, s in enumerate(shape)]

    def index(b):
        return tuple(b if i == batch_axis else 0 for i in range(len(shape)))

    return pl.BlockSpec(tuple(block), index)


def whole(shape: Sequence[int]) -> pl.BlockSpec:
    """All of an array, the same for every program (weights, biases)."""
    return pl.BlockSpec(tuple(shape), lambda b: (0,) * len(shape))


def per_tile(shape: Sequence[int]) -> pl.BlockSpec:
    """Row b of an array `[tiles, *shape]`: one program's partial sums."""
    return pl.BlockSpec((1, *shape), lambda b: (b,) + (0,) * len(shape))


def step(config: Config, others: dict[str, jax.Array], carry: Any, t: jax.Array,
         px: Sequence[jax.Array], lengths: jax.Array | None,
         matmul: Callable[..., Any]) -> tuple[Any, jax.Array]:
    """One masked step of the cell on gate blocks, its recurrent matmuls made
    by `matmul(k, h, slots)` (k: the tap's index in call order, slots: its
    names' positions in `plan.names`)."""
    calls: list[int] = []

    def kernel_matmul(params, h, names):
        del params  # the kernel holds the weights itself
        k = len(calls)
        calls.append(k)
        return blocks.as_blocks(matmul(k, h, config.plan.tap_slots(k)))

    with blocks.kernel_mode(kernel_matmul):
        return _masked_step(config.cell.step, others, carry, t, blocks.as_blocks(list(px)),
                            lengths)


def time_index(config: Config, i: jax.Array, *, backward: bool) -> jax.Array:
    """The step the i-th loop iteration runs: forward in time, or the reverse
    for `reverse` (the backward kernel runs the other way)."""
    last = config.T - 1
    return last - i if config.reverse != backward else i


def compiler_params(config: Config) -> Any:
    """Triton's settings on a GPU (none in the interpreter)."""
    if config.interpret:
        return None
    from jax.experimental.pallas import triton as plt
    return plt.CompilerParams(num_warps=4, num_stages=1)
