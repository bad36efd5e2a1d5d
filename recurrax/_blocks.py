r"""The gate-block view of a step, used while a fused kernel traces a cell.

A built-in cell computes its gates fused: `prepare` gives
`px = [px_1 | … | px_n]` (n blocks of H features), a recurrent matmul gives
`a = h [W_1 | … | W_m]`, and `step` adds and splits these with
`recurrax.cells` `split`. That is the fast form for `lax.scan`, but GPU
kernel compilers (Pallas on Triton) hold arrays whose sizes are powers of two
and cannot concatenate, so an `n·H`-wide array (n = 3 for the GRU) can be
neither formed nor split there, nor differentiated (the transpose of a split
is a concatenation).

While `kernel_mode(matmul)` is active, the same `step` runs on the blocks
themselves: the kernel hands it `px` as `GateBlocks` (a tuple of `[B, H]`
arrays), `recurrent_matmul` calls `matmul(params, h, names)` (one `[B, H]`
block per name, `GateBlocks` for more than one) instead of forming the fused
product, `+` acts block by block and `split` returns the blocks. A step that
does anything else with a fused array (a `tanh` of all gates at once, say)
gets a `TypeError` at trace time, and the kernel refuses the cell.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax


class GateBlocks:
    """A fused array held as its blocks `[B, H]`; supports `+` (block by
    block, with another `GateBlocks` of as many blocks) and `split`."""

    __slots__ = ("parts",)

    def __init__(self, parts: Sequence[jax.Array]):
        self.parts = tuple(parts)

    def __add__(self, other: object) -> GateBlocks:
        if not isinstance(other, GateBlocks) or len(other.parts) != len(self.parts):
            raise TypeError(
                f"a fused kernel holds a cell's gates as {len(self.parts)} separate blocks and "
                f"can add them only to another array of as many blocks, got "
                f"{type(other).__name__}")
        return GateBlocks([a + b for a, b in zip(self.parts, other.parts, strict=True)])

    __radd__ = __add__

    def split(self, n: int) -> list[jax.Array]:
        if n != len(self.parts):
            raise TypeError(f"a fused kernel holds these gates as {len(self.parts)} blocks; "
                            f"the step splits them into {n}")
        return list(self.parts)


#: The matmul of the kernel being traced: `(params, h, names) -> block(s)`.
_matmul: contextvars.ContextVar[Callable[..., Any] | None] = contextvars.ContextVar(
    "recurrax_kernel_matmul", default=None)


@contextlib.contextmanager
def kernel_mode(matmul: Callable[..., Any]) -> Iterator[None]:
    """Trace a step in its gate-block form (module docstring)."""
    token = _matmul.set(matmul)
    try:
        yield
    finally:
        _matmul.reset(token)


def active_matmul() -> Callable[..., Any] | None:
    """The kernel's `matmul` while `kernel_mode` is active, else None."""
    return _matmul.get()


def as_blocks(parts: Sequence[jax.Array]) -> Any:
    """One block as itself, several as `GateBlocks`."""
    return parts[0] if len(parts) == 1 else GateBlocks(parts)
