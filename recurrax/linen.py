"""`RNN`: a recurrax cell over a sequence, as a Flax Linen module
(`flax.linen.Module`), the twin of `recurrax.nnx.RNN`.

    model = recurrax.linen.RNN(recurrax.cells.lstm(64))
    variables = model.init(jax.random.key(0), xs)       # xs: [batch, T, D]
    ys = model.apply(variables, xs)                     # [batch, T, 64]
"""

from __future__ import annotations

from typing import Any

import jax
from flax import linen

from recurrax import _checks as checks
from recurrax.nnx import _options as options
from recurrax.protocols import Carry, Cell
from recurrax.scan import scan

#: the collection of params entries that are held, not trained (an integer leaf)
CONSTANTS = "constants"


class RNN(linen.Module):
    r"""One recurrax cell run over the time axis by `recurrax.scan`:

        carry_{t+1}, y_t = cell.step(params, carry_t, cell.prepare(params, x_t))

    for t = 0 … T−1 (T−1 … 0 with `reverse=True`), `ys` aligned with `xs`.

    Attributes:
      cell: a `recurrax.Cell`, e.g. `recurrax.cells.lstm(128)`.
      time_major: the layout of `xs` and `ys`: `[T, *batch, D]` if True,
        else `[*batch, T, D]` (False, the default, as in `flax.linen.RNN`).
      reverse: run from the last step to the first.
      return_carry: call's default for returning `(carry, ys)` (True) or
        `ys` alone (False, as in `flax.linen.RNN`).
      unroll, remat, hoist, weight_grads: passed to `recurrax.scan`.

    Variables: the input size `D` is read from `xs` at `init`, and the params
    are `cell.init(self.make_rng("params"), D)`, one entry of the `"params"`
    collection per entry of the cell's params dict, under its name (`W_xi`,
    `b_i`, …); an entry with an integer leaf goes to the `"constants"`
    collection instead. Params that are not a dict are held whole, as one
    entry named `"params"`.

    Raises `TypeError` or `ValueError` when the module is built (a `cell`
    that is not a `recurrax.Cell`, a flag that is not a bool, `unroll < 1`,
    an unknown `weight_grads`) and on a call (from `recurrax.scan`: `xs`,
    `carry` or `lengths` that do not fit).
    """

    cell: Cell
    time_major: bool = False
    reverse: bool = False
    return_carry: bool = False
    unroll: int | bool = 1
    remat: bool = False
    hoist: bool | None = None
    weight_grads: str = "after_loop"

    def __post_init__(self):
        checks.check_cell(self.cell)
        self._options()
        checks.check_flag("RNN: return_carry", self.return_carry)
        super().__post_init__()

    def _options(self) -> options.ScanOptions:
        return options.scan_options(
            "RNN", time_major=self.time_major, reverse=self.reverse, unroll=self.unroll,
            remat=self.remat, hoist=self.hoist, weight_grads=self.weight_grads)

    @linen.compact
    def __call__(self, xs: jax.Array, carry: Carry | None = None, *,
                 lengths: jax.Array | None = None, return_carry: bool | None = None) -> Any:
        """`ys`, or `(carry, ys)` when `return_carry` (default: the module's).

        `xs`: `[*batch, T, D]` (`[T, *batch, D]` with `time_major`); `carry`:
        the initial carry, `None` for `cell.initial_carry`; `lengths`: ints of
        the batch shape in `[0, T]`, steps `t >= lengths[b]` leave row b's
        carry unchanged and output 0 (`recurrax.scan`'s convention)."""
        full = options.wants_carry("RNN", return_carry, self.return_carry)
        layout = "[T, *batch, D]" if self.time_major else "[*batch, T, D]"
        checks.check_array("xs", xs, 2, layout)
        input_size = xs.shape[-1]
        if self.is_initializing():
            made = self.cell.init(self.make_rng("params"), input_size)
        else:  # the names and kinds only: the values come from the variables
            made = jax.eval_shape(lambda k: self.cell.init(k, input_size), jax.random.key(0))
        values = {}
        for name, value in options.entries(made).items():
            if options.is_trainable(value):
                values[name] = self.param(name, lambda _, v=value: v)
            else:
                values[name] = self.variable(CONSTANTS, name, lambda v=value: v).value
        params = options.from_entries(values, options.is_named(made))
        out = scan(self.cell, params, xs, carry, lengths=lengths, **self._options().kwargs())
        return out if full else out[1]
