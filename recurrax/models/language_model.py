r"""Token-level sequence models assembled from the library's pieces.

`language_model` is the model of the char-RNN and of the paper's language
modelling and sequence tasks: an embedding, a `stack` of L recurrent layers,
and a dense readout to logits over the vocabulary,

    e_t = E[w_t],   h⁰_t = e_t,   hˡ_t = cellₗ(hˡ⁻¹_t, hˡ_{t−1}),   z_t = h^L_t W_o + b_o

with dropout (rate p) on the inputs of every layer after the embedding and on
the readout's input, as Zaremba et al. (2014) regularise LSTM language models.
With `inputs="features"` the embedding is a dense layer, `e_t = x_t W_e + b_e`,
for real-valued inputs such as piano rolls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from recurrax import cells as cell_lib
from recurrax import nn
from recurrax.combinators import layer, stack
from recurrax.initializers import Initializers
from recurrax.protocols import Cell, Seq
from recurrax.resets import append_flags, with_resets
from recurrax.scan import step as cell_step


class TokenModel(NamedTuple):
    """A model over token ids.

    Attributes:
      init: `(key) -> params` = `{"embed": ..., "layers": (...), "readout": ...}`.
      apply: `(params, tokens[T, *batch], carry=None, *, resets=None, key=None)
        -> (carry, logits[T, *batch, V])`. `resets[T, *batch]` (0/1) zeroes
        every layer's carry before the steps where a new document starts;
        `key` turns dropout on.
      step: `(params, carry, token[*batch]) -> (carry, logits[*batch, V])`, one
        step for sampling.
      initial_carry: `(batch_shape) -> carry`, a tuple with one carry per layer.
      cells: the recurrent cells, bottom first.
    """

    init: Callable[[jax.Array], Any]
    apply: Callable[..., tuple[Any, jax.Array]]
    step: Callable[..., tuple[Any, jax.Array]]
    initial_carry: Callable[[tuple], Any]
    cells: tuple[Cell, ...]


def language_model(
    cell: str | Cell,
    vocab_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    embed_size: int | None = None,
    dropout: float = 0.0,
    initializers: Initializers = Initializers(),
    embed_init: Callable | None = None,
    unroll: int = 1,
    hoist: bool | None = None,
    inputs: str = "tokens",
    output_size: int | None = None,
) -> TokenModel:
    """Embedding → `num_layers` cells of `hidden_size` → dense readout.

    `inputs="tokens"` reads integer ids below `vocab_size`; `inputs="features"`
    reads float vectors of `vocab_size` features. The readout has
    `output_size` units (default `vocab_size`).

    `cell` is a name from `recurrax.cells.NAMES` or `LINEAR_NAMES`, or a `Cell`
    (then every layer uses it). `embed_size` defaults to `hidden_size` (MUT1 and MUT2 need the two
    equal). `initializers` is passed to every cell built by name; `embed_init`
    and the readout default to Flax's initialisers.
    """
    if vocab_size < 1 or hidden_size < 1 or num_layers < 1:
        raise ValueError(
            f"language_model: vocab_size, hidden_size and num_layers must be positive, got "
            f"{vocab_size}, {hidden_size}, {num_layers}"
        )
    E = hidden_size if embed_size is None else embed_size
    if isinstance(cell, str):
        layers = tuple(cell_lib.get(cell, hidden_size, initializers=initializers)
                       for _ in range(num_layers))
    else:
        layers = (cell,) * num_layers
    if inputs not in ("tokens", "features"):
        raise ValueError(f"language_model: inputs must be 'tokens' or 'features', got {inputs!r}")
    if inputs == "features":
        embed = nn.dense(E)
    else:
        embed = nn.embedding(E) if embed_init is None else nn.embedding(E, init=embed_init)
    readout = nn.dense(vocab_size if output_size is None else output_size)
    widths = [E] + [c.hidden_size for c in layers]

    def init(key: jax.Array):
        k_embed, k_out, *k_layers = jax.random.split(key, num_layers + 2)
        return {
            "embed": embed.init(k_embed, vocab_size),
            "layers": tuple(c.init(k, d)
                            for c, k, d in zip(layers, k_layers, widths[:-1], strict=True)),
            "readout": readout.init(k_out, widths[-1]),
        }

    def initial_carry(batch_shape: tuple = ()):
        return tuple(c.initial_carry(tuple(batch_shape)) for c in layers)

    def apply(params, tokens, carry=None, *, resets=None, key=None):
        if carry is None:  # ids are [T, *batch]; features [T, *batch, vocab_size]
            carry = initial_carry(tokens.shape[1:] if inputs == "tokens" else tokens.shape[1:-1])
        keys = [None] * (num_layers + 1) if key is None else list(
            jax.random.split(key, num_layers + 1))
        body = stack([_fed(c, keys[index] if index > 0 else None, dropout, resets,
                           unroll=unroll, hoist=hoist)
                      for index, c in enumerate(layers)])
        finals, x = body.apply(params["layers"], embed.apply(params["embed"], tokens), carry)
        x = nn.dropout(keys[-1], x, dropout)
        return finals, readout.apply(params["readout"], x)

    def step(params, carry, token):
        x = embed.apply(params["embed"], token)
        finals = []
        for c, p, h0 in zip(layers, params["layers"], carry, strict=True):
            h, x = cell_step(c, p, h0, x)
            finals.append(h)
        return tuple(finals), readout.apply(params["readout"], x)

    return TokenModel(init, apply, step, initial_carry, layers)


def _fed(cell: Cell, dropout_key: jax.Array | None, rate: float, resets: jax.Array | None,
         **options: Any) -> Seq:
    """`layer(cell, **options)` reading its input `x` as `dropout(x; dropout_key,
    rate)`, and with `resets` given, `with_resets(cell)` reading that with the
    flags appended (`append_flags`): one layer of the model's stack, built for
    one call of `apply`. Its params are the cell's own.

    The stack around it runs without dropout and without a key, so every mask
    comes from the model's own split `key → (k_0, …, k_L)`: `k_l` on the input
    of layer l ≥ 1, `k_L` on the readout's input.
    """
    inner = layer(cell if resets is None else with_resets(cell), **options)

    def apply(params, xs, carry=None, *, lengths=None, key=None):
        del key  # the mask's key is `dropout_key`, drawn by the model
        xs = nn.dropout(dropout_key, xs, rate)
        if resets is not None:
            xs = append_flags(xs, resets)
        return inner.apply(params, xs, carry, lengths=lengths)

    return Seq(cell.init, apply)
