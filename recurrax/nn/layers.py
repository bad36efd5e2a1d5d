"""Small stateless building blocks used around recurrent layers: `embedding`,
`dense`, `conv2d` and `dropout`.

`embedding`, `dense` and `conv2d` are `Layer`s, a `NamedTuple` of pure functions in the
style of `Cell` and `Seq`: `init(key, input_size) -> params` and
`apply(params, x) -> y`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recurrax.initializers import Initializer
from recurrax.nn import _checks


class Layer(NamedTuple):
    """A stateless layer: `init(key, input_size) -> params`, `apply(params, x) -> y`."""

    init: Callable[[jax.Array, int], dict]
    apply: Callable[[dict, jax.Array], jax.Array]


def embedding(
    features: int, *, init: Initializer = jax.nn.initializers.normal(1.0), dtype=jnp.float32,
    mode: str = "fill",
) -> Layer:
    r"""A lookup table: `y = E[ids]`, `E: (V, features)`.

    `init(key, V)` takes the vocabulary size as its input size (an embedding is
    a dense layer on one-hot inputs: `E[i] = onehot(i) E`). `apply(params, ids)`
    maps integer ids `[...]` to `[..., features]`. Params: `{"E": (V, F)}`, drawn
    from `N(0, 1)` by default, as Flax's `nn.Embed` does.

    Ids must be integers in `[0, V)`: float ids are a `ValueError`, and so are
    concrete ids out of range (negative ids too: they are never wrapped
    around). Under `jit`, `mode="fill"` (the default) gives NaN rows for
    out-of-range ids and a `jax.experimental.checkify` check that reports
    them; `mode="clip"` clamps ids to `[0, V - 1]` unchecked.
    """
    features = _checks.check_size("embedding", "features", features)
    mode = _checks.check_mode("embedding", mode)

    def init_fn(key: jax.Array, vocab_size: int) -> dict:
        vocab_size = _checks.check_size("embedding.init", "vocab_size", vocab_size)
        return {"E": init(key, (vocab_size, features), dtype)}

    def apply(params: dict, ids: jax.Array) -> jax.Array:
        _params(params, {"E": 2}, "embedding")
        if not hasattr(ids, "dtype"):
            ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(f"embedding: ids must be integers, got {ids.dtype}; cast with "
                             f".astype(jnp.int32) if the values are whole numbers")
        V = params["E"].shape[0]
        if mode == "clip":
            return jnp.take(params["E"], jnp.clip(ids, 0, V - 1), axis=0)
        bad = _checks.check_range("embedding", "ids", ids, V,
                                  f"the {V} rows of the table E", mode=mode)
        if bad is None:
            return jnp.take(params["E"], ids, axis=0)
        # V itself is out of bounds: jnp.take fills those rows with NaN
        return jnp.take(params["E"], jnp.where(bad, V, ids), axis=0)

    return Layer(init_fn, apply)


def _params(params: Any, needs: dict[str, int], where: str) -> None:
    """`params` must be a dict holding arrays of these numbers of axes."""
    if not isinstance(params, dict):
        raise TypeError(f"{where}: params must be the dict that init returns, got "
                        f"{type(params).__name__}")
    for name, ndim in needs.items():
        if name not in params:
            raise ValueError(f"{where}: params lack {name!r} (got keys {sorted(params)}); pass "
                             f"the dict that this layer's init returns")
        if np.ndim(params[name]) != ndim:
            raise ValueError(f"{where}: params[{name!r}] must have {ndim} axes, got shape "
                             f"{tuple(np.shape(params[name]))}")


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
    features = _checks.check_size("dense", "features", features)
    use_bias = _checks.check_flag("dense", "use_bias", use_bias)

    def init_fn(key: jax.Array, input_size: int) -> dict:
        input_size = _checks.check_size("dense.init", "input_size", input_size)
        k_w, k_b = jax.random.split(key)
        params = {"W": kernel_init(k_w, (input_size, features), dtype)}
        if use_bias:
            params["b"] = bias_init(k_b, (features,), dtype)
        return params

    def apply(params: dict, x: jax.Array) -> jax.Array:
        _params(params, {"W": 2, "b": 1} if use_bias else {"W": 2}, "dense")
        _checks.check_array("dense", "x", x)
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
    if not isinstance(padding, str) or padding not in ("SAME", "VALID"):
        raise ValueError(f"conv2d: padding must be 'SAME' or 'VALID', got {padding!r}")
    features = _checks.check_size("conv2d", "features", features)
    kernel_size = _checks.check_size("conv2d", "kernel_size", kernel_size)
    stride = _checks.check_size("conv2d", "stride", stride)
    use_bias = _checks.check_flag("conv2d", "use_bias", use_bias)

    def init_fn(key: jax.Array, in_channels: int) -> dict:
        in_channels = _checks.check_size("conv2d.init", "in_channels", in_channels)
        k_w, k_b = jax.random.split(key)
        params = {"W": kernel_init(k_w, (kernel_size, kernel_size, in_channels, features), dtype)}
        if use_bias:
            params["b"] = bias_init(k_b, (features,), dtype)
        return params

    def apply(params: dict, x: jax.Array) -> jax.Array:
        _params(params, {"W": 4, "b": 1} if use_bias else {"W": 4}, "conv2d")
        _checks.check_array("conv2d", "x", x)
        if x.ndim < 3 or x.shape[-1] != params["W"].shape[2]:
            raise ValueError(f"conv2d: x must be [*batch, H, W, {params['W'].shape[2]}], "
                             f"got shape {tuple(x.shape)}")
        if padding == "VALID" and min(x.shape[-3:-1]) < kernel_size:
            raise ValueError(f"conv2d: with padding='VALID' the image must be at least the "
                             f"kernel ({kernel_size} x {kernel_size}), got H, W = "
                             f"{tuple(x.shape[-3:-1])}; use padding='SAME' or a smaller kernel")
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

    `key=None` or `rate=0` returns `x` unchanged (evaluation mode). `rate`
    must be a number known when tracing (a Python or NumPy float, or a
    concrete 0-d array): a `TypeError` otherwise, a `ValueError` outside
    `[0, 1)` (NaN too).
    """
    if _checks.is_traced(rate):
        raise TypeError("dropout: rate must be a number known when tracing (a Python float), "
                        "got a traced value; pass it as a static argument")
    if isinstance(rate, (bool, np.bool_, str)) or np.ndim(rate) != 0:
        raise TypeError(f"dropout: rate must be a float in [0, 1), got "
                        f"{type(rate).__name__} {rate!r}")
    try:
        value = float(rate)  # only checked: the arithmetic below keeps `rate` as given
    except (TypeError, ValueError):
        raise TypeError(f"dropout: rate must be a float in [0, 1), got "
                        f"{type(rate).__name__} {rate!r}") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout: rate must lie in [0, 1), got {rate!r}")
    _checks.check_array("dropout", "x", x)
    if key is not None and not hasattr(key, "dtype"):
        raise TypeError(f"dropout: key must be a PRNG key (jax.random.key(seed)) or None, got "
                        f"{type(key).__name__} {key!r}")
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
