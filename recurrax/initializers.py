"""Default initialisers, as Flax's recurrent cells use them.

* input kernels `W_x*`: LeCun normal, `N(0, 1/D)` (truncated, as
  `jax.nn.initializers.lecun_normal`);
* recurrent kernels `W_h*`: orthogonal (each `(H, H)` matrix on its own);
* biases: zeros, except the LSTM's `b_f`, which starts at `forget_bias`.

An initialiser is any `(key, shape, dtype) -> Array`, the signature of
`jax.nn.initializers`. Every cell constructor takes
`initializers=Initializers(kernel=..., recurrent=..., bias=..., dtype=...)`
to override these (fields left out keep their defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]



class Initializers(NamedTuple):
    """How a cell draws its params: `kernel` for every `W_x*`, `recurrent` for
    every `W_h*`, `bias` for every `b_*`, all in `dtype`."""

    kernel: Initializer = jax.nn.initializers.lecun_normal()
    recurrent: Initializer = jax.nn.initializers.orthogonal()
    bias: Initializer = jax.nn.initializers.zeros
    dtype: Any = jnp.float32


def init_params(
    key: jax.Array,
    *,
    input_kernels: Sequence[str],
    recurrent_kernels: Sequence[str],
    biases: Sequence[str],
    input_size: int,
    hidden_size: int,
    initializers: Initializers,
) -> dict[str, jax.Array]:
    """Draw a flat param dict: `W_x*: (D, H)`, `W_h*: (H, H)`, `b_*: (H,)`.

    Each matrix gets its own key, so e.g. every `W_h*` is orthogonal by itself.
    """
    names = [*input_kernels, *recurrent_kernels, *biases]
    keys = dict(zip(names, jax.random.split(key, len(names)), strict=True))
    D, H, (kernel, recurrent, bias, dtype) = input_size, hidden_size, initializers
    # Draw in at least float32 (e.g. the QR behind `orthogonal` has no bfloat16
    # kernel on CPU), then store in the dtype asked for.
    draw = jnp.promote_types(dtype, jnp.float32)
    groups = [(input_kernels, kernel, (D, H)), (recurrent_kernels, recurrent, (H, H)),
              (biases, bias, (H,))]
    return {n: init(keys[n], shape, draw).astype(dtype)
            for group, init, shape in groups for n in group}
