"""Default initialisers, as Flax's recurrent cells use them.

* input kernels `W_x*`: LeCun normal, `N(0, 1/D)` (truncated, as
  `jax.nn.initializers.lecun_normal`);
* recurrent kernels `W_h*`: orthogonal (each `(H, H)` matrix on its own);
* biases: zeros, except the LSTM's `b_f`, which starts at `forget_bias`.

An initialiser is any `(key, shape, dtype) -> Array`, the signature of
`jax.nn.initializers`; each cell constructor takes `kernel_init`,
`recurrent_init` and `bias_init` to override these.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]

kernel_init: Initializer = jax.nn.initializers.lecun_normal()
recurrent_init: Initializer = jax.nn.initializers.orthogonal()
bias_init: Initializer = jax.nn.initializers.zeros


def init_params(
    key: jax.Array,
    *,
    input_kernels: Sequence[str],
    recurrent_kernels: Sequence[str],
    biases: Sequence[str],
    input_size: int,
    hidden_size: int,
    kernel: Initializer,
    recurrent: Initializer,
    bias: Initializer,
    dtype=jnp.float32,
) -> dict[str, jax.Array]:
    """Draw a flat param dict: `W_x*: (D, H)`, `W_h*: (H, H)`, `b_*: (H,)`.

    Each matrix gets its own key, so e.g. every `W_h*` is orthogonal by itself.
    """
    names = [*input_kernels, *recurrent_kernels, *biases]
    keys = dict(zip(names, jax.random.split(key, len(names))))
    params = {}
    for name in input_kernels:
        params[name] = kernel(keys[name], (input_size, hidden_size), dtype)
    for name in recurrent_kernels:
        params[name] = recurrent(keys[name], (hidden_size, hidden_size), dtype)
    for name in biases:
        params[name] = bias(keys[name], (hidden_size,), dtype)
    return params
