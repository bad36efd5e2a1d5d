"""`Bidirectional` and `Stack`: `recurrax.bidirectional` and `recurrax.stack`
as Flax NNX modules, built from `RNN`s (and from each other)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import jax
import jax.numpy as jnp
from flax import nnx

from recurrax import _checks as checks
from recurrax.masking import reverse_sequence
from recurrax.nnx.rnn import RNN, SequenceModule
from recurrax.protocols import Carry

Part = Union[RNN, "Bidirectional", "Stack"]


def _check_part(where: str, name: str, part: Any) -> Part:
    if not isinstance(part, (RNN, Bidirectional, Stack)):
        raise TypeError(f"{where}: {name} must be a recurrax.nnx RNN, Bidirectional or Stack, "
                        f"got {type(part).__name__}")
    return part


def _carries(where: str, carry: Any, n: int) -> Sequence[Any]:
    if carry is None:
        return (None,) * n
    if not isinstance(carry, (tuple, list)) or len(carry) != n:
        raise ValueError(f"{where}: carry must be None or a tuple of {n} carries, one per part, "
                         f"got {type(carry).__name__}")
    return carry


class Bidirectional(SequenceModule):
    r"""A forward and a backward pass over the same inputs, merged per step:

        y_t = [→y_t ; ←y_t]   (merge="concat")   or   →y_t + ←y_t   (merge="sum")

    `recurrax.bidirectional(fwd, bwd, merge)` on the two parts' params. The
    backward part starts at each row's last valid step (`lengths[b] − 1`) and
    its outputs stay aligned with `xs`: an `RNN` runs with `reverse=True`, a
    `Stack` or `Bidirectional` on each row reversed within its length.

    Args:
      forward, backward: `RNN`, `Stack` or `Bidirectional` modules on the same
        inputs (same `input_size` and `time_major`), built with the default
        `reverse=False`: this module sets the directions. The same module
        twice ties the two directions' params.
      merge: `"concat"` (output width the sum of the two) or `"sum"` (equal
        widths needed).
      return_carry: call's default for returning `(carry, ys)` or `ys`.

    Carry: `(forward_carry, backward_carry)`. `recurrax_params()`:
    `{"fwd": ..., "bwd": ...}`, as `recurrax.bidirectional` takes them.
    """

    def __init__(self, forward: Part, backward: Part, *, merge: str = "concat",
                 return_carry: bool = False):
        self.forward = _check_part("Bidirectional", "forward", forward)
        self.backward = _check_part("Bidirectional", "backward", backward)
        self.merge = checks.check_choice("Bidirectional: merge", merge, ("concat", "sum"))
        self.return_carry = checks.check_flag("Bidirectional: return_carry", return_carry)
        for name, part in (("forward", forward), ("backward", backward)):
            if isinstance(part, RNN) and part.options.reverse:
                raise ValueError(f"Bidirectional: {name} was built with reverse=True; build it "
                                 f"with reverse=False, Bidirectional sets the directions")
        if forward.time_major != backward.time_major or forward.input_size != backward.input_size:
            raise ValueError(
                f"Bidirectional: forward and backward must read the same inputs, got "
                f"time_major {forward.time_major} and {backward.time_major}, input_size "
                f"{forward.input_size} and {backward.input_size}")
        if merge == "sum" and forward.output_size != backward.output_size:
            raise ValueError(f"Bidirectional: merge='sum' needs equal output widths, got "
                             f"{forward.output_size} forward and {backward.output_size} backward")
        self.time_major = forward.time_major
        self.input_size = forward.input_size
        self.output_size = forward.output_size + (backward.output_size if merge == "concat"
                                                  else 0)

    def recurrax_params(self) -> dict[str, Any]:
        return {"fwd": self.forward.recurrax_params(), "bwd": self.backward.recurrax_params()}

    def run(self, xs: jax.Array, carry: Carry | None = None, *,
            lengths: jax.Array | None = None) -> tuple[Carry, jax.Array]:
        """`(carry, ys)`."""
        c_fwd, c_bwd = _carries("Bidirectional", carry, 2)
        c_fwd, y_fwd = self.forward.run(xs, c_fwd, lengths=lengths)
        if isinstance(self.backward, RNN):
            c_bwd, y_bwd = self.backward.run(xs, c_bwd, lengths=lengths, reverse=True)
        else:
            flipped = reverse_sequence(xs, lengths, self.time_major)
            c_bwd, y_bwd = self.backward.run(flipped, c_bwd, lengths=lengths)
            y_bwd = reverse_sequence(y_bwd, lengths, self.time_major)
        ys = jnp.concatenate([y_fwd, y_bwd], axis=-1) if self.merge == "concat" else y_fwd + y_bwd
        return (c_fwd, c_bwd), ys


class Stack(SequenceModule):
    r"""Layers one after another, each a full scan over the sequence:

        x⁰ = xs
        hˡ = fₗ(xˡ)  (+ xˡ for l ≥ 1 when `residual`)
        xˡ⁺¹ = dropout(hˡ, rate)           for l < L − 1
        ys = h^{L−1}

    `recurrax.stack(layers, residual, dropout)` on the layers' params.

    Args:
      layers: a list of `RNN`, `Bidirectional` or `Stack` modules, each
        reading what the one before outputs (`input_size` equal to the
        previous `output_size`), all of one `time_major`.
      residual: add each layer's input to its output (after the first); those
        layers must keep the width.
      dropout: the rate of an `nnx.Dropout` between layers (not after the
        last); active unless the model is put in evaluation mode
        (`model.eval()`, back with `model.train()`). A rate above 0 needs `rngs`.
      rngs: a `flax.nnx.Rngs` with a `dropout` stream (or a default one).
      return_carry: call's default for returning `(carry, ys)` or `ys`.

    Carry: a tuple, one per layer. `recurrax_params()`: a tuple, one entry per
    layer, as `recurrax.stack` takes them.
    """

    def __init__(self, layers: Sequence[Part], *, residual: bool = False, dropout: float = 0.0,
                 rngs: nnx.Rngs | None = None, return_carry: bool = False):
        if not isinstance(layers, (list, tuple)):
            hint = (" (wrap a single one in a list: Stack([layer]))"
                    if isinstance(layers, (RNN, Bidirectional, Stack)) else "")
            raise TypeError(f"Stack: layers must be a list of RNN, Bidirectional or Stack "
                            f"modules, got {type(layers).__name__}{hint}")
        if not layers:
            raise ValueError("Stack: layers needs at least one layer")
        for index, layer in enumerate(layers):
            _check_part("Stack", f"layers[{index}]", layer)
        self.residual = checks.check_flag("Stack: residual", residual)
        rate = checks.check_real("Stack: dropout", dropout, minimum=0.0)
        if rate >= 1.0:
            raise ValueError(f"Stack: dropout must lie in [0, 1), got {dropout!r}")
        if rate > 0 and not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"Stack: dropout {rate:g} needs rngs, a flax.nnx.Rngs (e.g. "
                            f"nnx.Rngs(0)), got {type(rngs).__name__}")
        self.return_carry = checks.check_flag("Stack: return_carry", return_carry)
        for index, (before, layer) in enumerate(zip(layers, layers[1:], strict=False), 1):
            if layer.time_major != before.time_major:
                raise ValueError(f"Stack: every layer needs the same time_major, but layer "
                                 f"{index} has {layer.time_major} and layer {index - 1} "
                                 f"{before.time_major}")
            if layer.input_size != before.output_size:
                raise ValueError(f"Stack: layer {index} takes {layer.input_size} input "
                                 f"features, but layer {index - 1} outputs {before.output_size}")
            if self.residual and layer.output_size != layer.input_size:
                raise ValueError(f"Stack: residual needs layer {index} to keep its input width "
                                 f"{layer.input_size}, but it outputs {layer.output_size}")
        self.layers = nnx.List(layers)
        self.dropout = nnx.Dropout(rate, rngs=rngs if rate > 0 else None)
        self.time_major = layers[0].time_major
        self.input_size = layers[0].input_size
        self.output_size = layers[-1].output_size

    def recurrax_params(self) -> tuple:
        return tuple(layer.recurrax_params() for layer in self.layers)

    def run(self, xs: jax.Array, carry: Carry | None = None, *,
            lengths: jax.Array | None = None) -> tuple[Carry, jax.Array]:
        """`(carry, ys)`."""
        n = len(self.layers)
        finals, h = [], xs
        for index, (layer, c) in enumerate(zip(self.layers, _carries("Stack", carry, n),
                                               strict=True)):
            c, out = layer.run(h, c, lengths=lengths)
            if self.residual and index > 0:
                out = out + h  # padded steps stay 0: both terms are 0 there
            if index < n - 1:
                out = self.dropout(out)
            finals.append(c)
            h = out
        return tuple(finals), h
