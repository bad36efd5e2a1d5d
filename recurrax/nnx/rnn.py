"""`RNN`: a recurrax cell over a sequence, as a Flax NNX module."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from recurrax import _checks as checks
from recurrax.cells import _common
from recurrax.nnx import _options as options
from recurrax.protocols import Carry, Cell
from recurrax.scan import scan


class Constant(nnx.Variable):
    """A cell's params entry that is held, not trained: one with an integer
    leaf (such as the universal cell's `program`). Filters such as
    `nnx.Optimizer(..., wrt=nnx.Param)` and `nnx.grad`'s default leave it
    alone."""


class SequenceModule(nnx.Module):
    """What `RNN`, `Bidirectional` and `Stack` share: a call that returns
    `ys`, or `(carry, ys)`, of the subclass's `run(xs, carry, *, lengths)`."""

    return_carry: bool

    def run(self, xs: jax.Array, carry: Carry | None = None, *,
            lengths: jax.Array | None = None) -> tuple[Carry, jax.Array]:
        raise NotImplementedError

    def __call__(self, xs: jax.Array, carry: Carry | None = None, *,
                 lengths: jax.Array | None = None, return_carry: bool | None = None) -> Any:
        """`ys`, or `(carry, ys)` when `return_carry` (default: the module's).

        `xs`: `[*batch, T, D]` (`[T, *batch, D]` with `time_major`); `carry`:
        the initial carry, `None` for `cell.initial_carry`; `lengths`: ints of
        the batch shape in `[0, T]`, steps `t >= lengths[b]` leave row b's
        carry unchanged and output 0 (`recurrax.scan`'s convention)."""
        full = options.wants_carry(type(self).__name__, return_carry, self.return_carry)
        out = self.run(xs, carry, lengths=lengths)
        return out if full else out[1]


class RNN(SequenceModule):
    r"""One recurrax cell run over the time axis by `recurrax.scan`:

        carry_{t+1}, y_t = cell.step(params, carry_t, cell.prepare(params, x_t))

    for t = 0 … T−1 (T−1 … 0 with `reverse=True`), `ys` aligned with `xs`.

    Args:
      cell: a `recurrax.Cell`, e.g. `recurrax.cells.lstm(128)`.
      input_size: `D`, the inputs' last axis.
      rngs: a `flax.nnx.Rngs`; the params are `cell.init(rngs.params(), D)`.
      time_major: the layout of `xs` and `ys`: `[T, *batch, D]` if True,
        else `[*batch, T, D]` (False, the default, as in `flax.nnx.RNN`).
      reverse: run from the last step to the first.
      return_carry: call's default for returning `(carry, ys)` (True) or
        `ys` alone (False, as in `flax.nnx.RNN`).
      unroll, remat, hoist, weight_grads: passed to `recurrax.scan`.

    State: `self.params`, an `nnx.Dict` with one `nnx.Param` per entry of
    the cell's params dict, under its name (`W_xi`, `W_hi`, `b_i`, …); an
    entry with an integer leaf is a `Constant` instead. Params that are not
    a dict are held whole, as one entry named `"params"`.
    `recurrax_params()` gives back the plain dict, as `recurrax.scan` takes it.

    Carry: the cell's (`h`, or `(c, h)` for the LSTM), `None` meaning
    `cell.initial_carry`. Output width: `output_size = cell.hidden_size`.

    Raises (before anything runs): `TypeError` for a `cell` that is not a
    `recurrax.Cell`, an `input_size` that is not an int, `rngs` that is not
    an `nnx.Rngs` or a flag that is not a bool; `ValueError` for an
    `input_size` below 1, one the cell refuses (MUT1 and MUT2 need
    `input_size == hidden_size`), `unroll < 1` or an unknown `weight_grads`.
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        *,
        rngs: nnx.Rngs,
        time_major: bool = False,
        reverse: bool = False,
        return_carry: bool = False,
        unroll: int | bool = 1,
        remat: bool = False,
        hoist: bool | None = None,
        weight_grads: str = "after_loop",
    ):
        self.cell = checks.check_cell(cell)
        self.input_size = _common.check_input_size("RNN", input_size)
        self.options = options.scan_options(
            "RNN", time_major=time_major, reverse=reverse, unroll=unroll, remat=remat,
            hoist=hoist, weight_grads=weight_grads)
        self.return_carry = checks.check_flag("RNN: return_carry", return_carry)
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"RNN: rngs must be a flax.nnx.Rngs, e.g. nnx.Rngs(0), got "
                            f"{type(rngs).__name__}")
        params = cell.init(rngs.params(), self.input_size)
        self.named = options.is_named(params)
        self.params = nnx.Dict({
            name: (nnx.Param if options.is_trainable(value) else Constant)(value)
            for name, value in options.entries(params).items()
        })

    @property
    def time_major(self) -> bool:
        return self.options.time_major

    @property
    def output_size(self) -> int:
        return self.cell.hidden_size

    def recurrax_params(self) -> Any:
        """The params as plain arrays, in the form `cell.init` gives them."""
        values = {name: variable.get_value() for name, variable in self.params.items()}
        return options.from_entries(values, self.named)

    def run(self, xs: jax.Array, carry: Carry | None = None, *, lengths: jax.Array | None = None,
            reverse: bool | None = None) -> tuple[Carry, jax.Array]:
        """`(carry, ys)` of `recurrax.scan(cell, params, xs, carry, lengths=lengths,
        ...)` with this module's options; `reverse` (a bool) overrides its own."""
        if reverse is not None:
            reverse = checks.check_flag("RNN: reverse", reverse)
        return scan(self.cell, self.recurrax_params(), xs, carry, lengths=lengths,
                    **self.options.kwargs(reverse))
