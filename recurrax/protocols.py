"""The two protocols of recurrax: `Cell` (one time step) and `Seq` (a sequence).

Both are `NamedTuple`s of pure functions over plain pytrees, in the style of
optax's `GradientTransformation`: nothing is hidden in objects, so every
function composes with `jax.jit`, `jax.grad`, `jax.vmap` and sharding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Array = jax.Array
Params = Any  # a pytree of arrays; for the built-in cells a flat dict[str, Array]
Carry = Any   # a pytree of arrays with leading batch axes, e.g. `h` or `(c, h)`


class Cell(NamedTuple):
    """One recurrent time step, split into a time-parallel and a sequential part.

    Attributes:
      init: `(key, input_size) -> params`, a flat dict of arrays named by the
        symbols of the cell's equations (`W_x*: (D, H)`, `W_h*: (H, H)`,
        `b_*: (H,)`).
      initial_carry: `(batch_shape, dtype) -> carry`, zeros of shape
        `(*batch_shape, H)` (a tuple `(c, h)` for the LSTM).
      prepare: `(params, xs[..., D]) -> pxs[..., K]`, everything that does not
        depend on the carry (the input projections, one fused matmul). Works on
        any leading axes, so it may run on a whole sequence at once or on one
        step at a time with identical numbers.
      step: `(params, carry, px) -> (carry, y)`, the recurrence alone; every
        built-in cell outputs `y = h`.
      hidden_size: `H`.
      linear: `None` for most cells. A cell whose recurrence is linear in
        the carry, `carry_t = a_t ⊙ carry_{t−1} + b_t` with `a_t, b_t` from
        the inputs alone (minGRU, minLSTM, the LRU), sets it to
        `(params, pxs, carry, valid) -> carries`: every carry of the sequence
        at once, `carries[t]` the carry after step t, from the prepared
        inputs `pxs` (time-major, `[T, *batch, K]`), the initial `carry` and
        `valid` (`[T, *batch]` bools, or `None` for all valid; an invalid step
        leaves the carry unchanged). It must equal running `step` T times, up
        to float rounding, and is computed by one parallel (associative)
        scan; `recurrax.parallel.scan` uses it instead of Newton iterations.

    `scan` and `step` check a cell against these rules on abstract values
    before running it (`recurrax._checks`), and a break raises an error that
    names the rule: `initial_carry` takes both arguments, `prepare` keeps the
    leading axes, `step` returns a pair whose carry has the structure (a tuple
    stays a tuple), shapes and dtypes of the one it was given, and `y` of
    shape `[*batch, hidden_size]`.
    """

    init: Callable[..., Params]
    initial_carry: Callable[..., Carry]
    prepare: Callable[[Params, Array], Array]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    hidden_size: int
    linear: Callable[..., Carry] | None = None


class Seq(NamedTuple):
    """A whole sequence model (one layer or many), built by `layer`, `stack`
    and `bidirectional`.

    Attributes:
      init: `(key, input_size) -> params`.
      apply: `(params, xs, carry=None, *, lengths=None, key=None)
        -> (carry, ys)`. `key` drives stochastic parts such as dropout;
        `key=None` means deterministic (evaluation) mode.
    """

    init: Callable[..., Params]
    apply: Callable[..., tuple[Carry, Array]]
