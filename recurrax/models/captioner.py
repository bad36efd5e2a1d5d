r"""Show, Attend and Tell (Xu et al., 2015) in small: a convolutional encoder,
and an LSTM decoder with soft attention over the encoder's feature grid.

Encoder. Convolutions with ReLU (`recurrax.nn.conv2d`, 3×3 kernels, the
first with stride 1, the others with stride 2) turn an image `[S, S, 3]`
(values in [0, 1], centred to [−0.5, 0.5]) into a grid `[S/2^(n−1),
S/2^(n−1), K]`, read as L annotation vectors `a_1 … a_L ∈ R^K`
(`recurrax.nn.attention.grid_to_memory`, row-major cells). The image gets two
more channels, each pixel's row and column in [−1, 1] (CoordConv, Liu et al.
2018): the context Σ_i α_i a_i forgets where the cells were, so without them a
small encoder cannot tell "left" from "right".

Decoder. With ā = (1/L) Σ_i a_i, the initial state comes from two one-layer
MLPs of the mean annotation (the paper's f_init,c and f_init,h):

    c_0 = tanh(ā W_c0 + b_c0),   h_0 = tanh(ā W_h0 + b_h0)

and at step t = 1 … C, with the previous word y_{t−1} (y_0 = <start>):

    e_i  = v · tanh(h_{t−1} W_q + a_i W_m + b_a),   α_t = softmax(e)
    ẑ_t  = β_t Σ_i α_{t,i} a_i,                     β_t = σ(h_{t−1} W_β + b_β)
    c_t, h_t = LSTM([E y_{t−1}; ẑ_t], (c_{t−1}, h_{t−1}))
    p(y_t | a, y_{<t}) = softmax((E y_{t−1} + h_t L_h + ẑ_t L_z) L_o + b_o)

(attention `recurrax.nn.attention.soft_visual`, LSTM `recurrax.cells.lstm`,
`L_h, L_z` the paper's deep output layer, eq. 7). Training minimises, per
caption of C words plus <end>, the masked cross-entropy plus the doubly
stochastic penalty (the paper's eq. 14):

    −(1/N) Σ_t log p(y_t | a, y_{<t}) + λ Σ_i (1 − Σ_t α_{t,i})²

averaged over the batch, N the number of valid targets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax import cells, nn
from recurrax.masking import sequence_mask
from recurrax.nn import attention, losses
from recurrax.scan import step as cell_step


class Captioner(NamedTuple):
    """The model's pure functions.

    - `init(key) -> params`
    - `encode(params, images[*batch, S, S, 3]) -> a[L, *batch, K]` (floats in [0, 1])
    - `initial_carry(params, a) -> (c_0, h_0)`
    - `apply(params, images, inputs[T, *batch], *, key=None, dropout=0.0) ->
      (logits[T, *batch, V], α[T, L, *batch])`: teacher forcing, the words
      `inputs` fed in (`<start> w_1 … w_n …`); with a `key`, inverted dropout
      of rate `dropout` on the deep output `E y_{t−1} + h_t L_h + ẑ_t L_z`.
    - `decoder(params, images[B, ...]) -> (step, carry)`: one decoding step,
      `step(carry, tokens[B]) -> (carry, logits[B, V])`, for
      `recurrax.models.beam.greedy` and `beam_search`; every leaf of `carry` has the
      leading batch axis B (the annotations are stored batch-first there).
    """

    init: Callable
    encode: Callable
    initial_carry: Callable
    apply: Callable
    decoder: Callable
    grid: int


def captioner(vocab_size: int, *, image_size: int = 32, channels: tuple[int, ...] = (16, 32),
              features: int = 64, embed: int = 64, hidden: int = 256,
              attention_size: int = 64) -> Captioner:
    """A `Captioner` over `vocab_size` words: convolutions with `channels` and
    then `features` (= K) output channels, so the grid is `image_size /
    2^len(channels)` cells a side; word embeddings of size `embed`; an LSTM of
    `hidden` units; an attention layer of `attention_size`."""
    convs = [nn.conv2d(c, 3, stride=1 if i == 0 else 2)
             for i, c in enumerate((*channels, features))]
    grid = image_size // 2 ** len(channels)
    words = nn.embedding(embed, init=jax.nn.initializers.normal(0.1))
    att = attention.soft_visual(attention_size)
    cell = cells.lstm(hidden)
    init_c, init_h = nn.dense(hidden), nn.dense(hidden)
    L_h, L_z = nn.dense(embed, use_bias=False), nn.dense(embed, use_bias=False)
    L_o = nn.dense(vocab_size)

    def init(key: jax.Array) -> dict:
        keys = iter(jax.random.split(key, len(convs) + 8))
        in_channels = (3 + 2, *channels)  # RGB and the (row, column) channels
        conv_params = [conv.init(next(keys), c)
                       for conv, c in zip(convs, in_channels, strict=True)]
        return {"conv": conv_params,
                "E": words.init(next(keys), vocab_size),
                "attention": att.init(next(keys), hidden, features),
                "lstm": cell.init(next(keys), embed + features),
                "init_c": init_c.init(next(keys), features),
                "init_h": init_h.init(next(keys), features),
                "L_h": L_h.init(next(keys), hidden), "L_z": L_z.init(next(keys), features),
                "L_o": L_o.init(next(keys), embed)}

    def encode(params: dict, images: jax.Array) -> jax.Array:
        coords = jnp.linspace(-1.0, 1.0, images.shape[-2])
        rows, cols = jnp.meshgrid(coords, coords, indexing="ij")
        where = jnp.broadcast_to(jnp.stack([rows, cols], -1), images.shape[:-1] + (2,))
        x = jnp.concatenate([images - 0.5, where.astype(images.dtype)], -1)
        for conv, p in zip(convs, params["conv"], strict=True):
            x = jax.nn.relu(conv.apply(p, x))
        return attention.grid_to_memory(x)

    def initial_carry(params: dict, a: jax.Array):
        mean = jnp.mean(a, axis=0)
        return (jnp.tanh(init_c.apply(params["init_c"], mean)),
                jnp.tanh(init_h.apply(params["init_h"], mean)))

    def word_step(params: dict, carry, a, keys, y_prev, key=None, rate=0.0):
        """One step of the decoder equations: `(c, h), y_{t−1} -> (c', h'), logits, α`."""
        z, alpha = att.apply(params["attention"], carry[1], a, keys=keys)
        e = words.apply(params["E"], y_prev)
        carry, h = cell_step(cell, params["lstm"], carry, jnp.concatenate([e, z], -1))
        deep = nn.dropout(key, e + L_h.apply(params["L_h"], h) + L_z.apply(params["L_z"], z), rate)
        return carry, L_o.apply(params["L_o"], deep), alpha

    def apply(params: dict, images: jax.Array, inputs: jax.Array, *, key=None, dropout=0.0):
        a = encode(params, images)
        keys = att.prepare(params["attention"], a)
        step_keys = None if key is None else jax.random.split(key, inputs.shape[0])

        def body(carry, xs):
            y_prev, step_key = xs
            carry, logits, alpha = word_step(params, carry, a, keys, y_prev, step_key, dropout)
            return carry, (logits, alpha)

        _, (logits, alphas) = jax.lax.scan(body, initial_carry(params, a), (inputs, step_keys))
        return logits, alphas

    def decoder(params: dict, images: jax.Array):
        a = encode(params, images)
        c, h = initial_carry(params, a)
        batch_first = lambda m: jnp.moveaxis(m, 0, 1)
        carry = {"c": c, "h": h, "a": batch_first(a),
                 "keys": batch_first(att.prepare(params["attention"], a))}

        def step(carry: dict, tokens: jax.Array):
            (c, h), logits, _ = word_step(params, (carry["c"], carry["h"]), batch_first(carry["a"]),
                                          batch_first(carry["keys"]), tokens)
            return {**carry, "c": c, "h": h}, logits

        return step, carry

    return Captioner(init, encode, initial_carry, apply, decoder, grid)


def loss(model: Captioner, params: dict, images: jax.Array, tokens: jax.Array,
         penalty: float = 1.0, *, key: jax.Array | None = None,
         dropout: float = 0.0) -> tuple[jax.Array, dict]:
    """Teacher-forced loss of captions `tokens[C + 1, B]` (`<start> w_1 … w_n
    <end> <pad> …`, time-major, pad id 0): masked cross-entropy of predicting
    `tokens[1:]` from `tokens[:-1]`, plus `penalty` (λ) times the batch mean
    of the doubly stochastic penalty over each caption's valid steps. `key`
    and `dropout` go to `model.apply`."""
    inputs, targets = tokens[:-1], tokens[1:]
    steps = jnp.sum(targets != 0, axis=0)  # words + <end>
    logits, alphas = model.apply(params, images, inputs, key=key, dropout=dropout)
    mask = sequence_mask(steps, targets.shape[0])
    nll = losses.softmax_cross_entropy(logits, targets, mask)
    reg = jnp.mean(attention.doubly_stochastic_penalty(alphas, steps))
    return nll + penalty * reg, {"nll": nll, "penalty": reg, "count": jnp.sum(mask)}
