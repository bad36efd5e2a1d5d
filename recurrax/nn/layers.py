"""Small stateless building blocks used around recurrent layers: `embedding`,
`dense`, `conv2d` and `dropout`.

`embedding`, `dense` and `conv2d` are `Layer`s, a `NamedTuple` of pure functions in the
style of `Cell` and `Seq`: `init(key, input_size) -> params` and
`apply(params, x) -> y`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.initializers import Initializer


class Layer(NamedTuple):
    """A stateless layer: `init(key, input_size) -> params`, `apply(params, x) -> y`."""

    init: Callable[[jax.Array, int], dict]
    apply: Callable[[dict, jax.Array], jax.Array]


def embedding(
    features: int, *, init: Initializer = jax.nn.initializers.normal(1.0), dtype=jnp.float32
) -> Layer:
    r"""A lookup table: `y = E[ids]`, `E: (V, features)`.

    `init(key, V)` takes the vocabulary size as its input size (an embedding is
    a dense layer on one-hot inputs: `E[i] = onehot(i) E`). `apply(params, ids)`
    maps integer ids `[...]` to `[..., features]`. Params: `{"E": (V, F)}`, drawn
    from `N(0, 1)` by default, as Flax's `nn.Embed` does.
    """

    def init_fn(key: jax.Array, vocab_size: int) -> dict:
        return {"E": init(key, (vocab_size, features), dtype)}

    def apply(params: dict, ids: jax.Array) -> jax.Array:
        if not jnp.issubdtype(jnp.asarray(ids).dtype, jnp.integer):
            raise ValueError(f"embedding: ids must be integers, got {jnp.asarray(ids).dtype}")
        return jnp.take(params["E"], ids, axis=0)

    return Layer(init_fn, apply)


def dense(
    features: int,
    *,
    use_bias: bool = True,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
    dtype=jnp.float32,
) -> Layer:
    r"""An affine map on the last axis: `y = x W + b`, `W: (D, features)`,
    `b: (features,)`. Params: `{"W": ..., "b": ...}` (no `b` without bias)."""

    def init_fn(key: jax.Array, input_size: int) -> dict:
        k_w, k_b = jax.random.split(key)
        params = {"W": kernel_init(k_w, (input_size, features), dtype)}
        if use_bias:
            params["b"] = bias_init(k_b, (features,), dtype)
        return params

    def apply(params: dict, x: jax.Array) -> jax.Array:
        if x.shape[-1:] != params["W"].shape[:1]:
            raise ValueError(
                f"dense: x must have {params['W'].shape[0]} features on its last axis, "
                f"got shape {tuple(x.shape)}"
            )
        y = x @ params["W"]
        return y + params["b"] if use_bias else y

    return Layer(init_fn, apply)


def conv2d(
    features: int,
    kernel_size: int = 3,
    *,
    stride: int = 1,
    padding: str = "SAME",
    use_bias: bool = True,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
    dtype=jnp.float32,
) -> Layer:
    r"""A 2-D convolution (cross-correlation, as in every deep-learning
    library) over images `x[*batch, H, W, C]` (channels last):

        y[i, j, o] = b[o] + Σ_{u, v < k} Σ_c x[s·i + u − p_h, s·j + v − p_w, c] W[u, v, c, o]

    with `k = kernel_size`, `s = stride`, out-of-range `x` read as 0.
    `padding="VALID"`: `p = 0`, `H' = ⌊(H − k) / s⌋ + 1`. `padding="SAME"`:
    `H' = ⌈H / s⌉`, padded by `P = max((H' − 1) s + k − H, 0)` in all, `p_h =
    ⌊P / 2⌋` before (the rest after), likewise for W. `init(key, C)` ->
    `{"W": (k, k, C, features), "b": (features,)}`; `apply` keeps any leading
    batch axes.
    """
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"conv2d: padding must be 'SAME' or 'VALID', got {padding!r}")

    def init_fn(key: jax.Array, in_channels: int) -> dict:
        k_w, k_b = jax.random.split(key)
        params = {"W": kernel_init(k_w, (kernel_size, kernel_size, in_channels, features), dtype)}
        if use_bias:
            params["b"] = bias_init(k_b, (features,), dtype)
        return params

    def apply(params: dict, x: jax.Array) -> jax.Array:
        if x.ndim < 3 or x.shape[-1] != params["W"].shape[2]:
            raise ValueError(f"conv2d: x must be [*batch, H, W, {params['W'].shape[2]}], "
                             f"got shape {tuple(x.shape)}")
        batch = x.shape[:-3]
        images = x.reshape((-1,) + x.shape[-3:])
        y = jax.lax.conv_general_dilated(images, params["W"], (stride, stride), padding,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y.reshape(batch + y.shape[1:])
        return y + params["b"] if use_bias else y

    return Layer(init_fn, apply)


def dropout(key: jax.Array | None, x: jax.Array, rate: float) -> jax.Array:
    r"""Inverted dropout: each entry is kept with probability `1 − rate` and
    scaled by `1 / (1 − rate)`, so `E[dropout(x)] = x`:

        out = x ⊙ m / (1 − rate),   m_i ~ Bernoulli(1 − rate)

    `key=None` or `rate=0` returns `x` unchanged (evaluation mode).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must lie in [0, 1), got {rate!r}")
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
