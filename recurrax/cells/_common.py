"""Pieces every built-in cell shares: argument checks, the zero carry, the fused
projections and their split."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recurrax import _blocks as blocks
from recurrax import _deferred as deferred
from recurrax import initializers as inits


def _check_positive_int(where: str, name: str, value: object) -> int:
    """`value` as a Python int >= 1 (NumPy integers accepted): a `TypeError`
    for a bool, float or other non-integer, a `ValueError` below 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        hint = ""
        if isinstance(value, float) and value.is_integer():
            hint = f" (use {name}={int(value)})"
        raise TypeError(
            f"{where}: {name} must be a positive int, got {type(value).__name__} {value!r}{hint}"
        )
    if value < 1:
        raise ValueError(f"{where}: {name} must be a positive int, got {int(value)}")
    return int(value)


def check_hidden_size(name: str, hidden_size: int) -> int:
    """`hidden_size` as a Python int >= 1 (NumPy integers accepted)."""
    return _check_positive_int(name, "hidden_size", hidden_size)


def check_input_size(name: str, input_size: int) -> int:
    """`input_size` as a Python int >= 1 (NumPy integers accepted)."""
    return _check_positive_int(name, "input_size", input_size)


def check_flag(where: str, name: str, value: object) -> bool:
    """A constructor's bool option: `True`/`False` (NumPy bools accepted), else
    a `TypeError` (a string such as "no" would silently mean True)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{where}: {name} must be True or False, got {type(value).__name__} "
                    f"{value!r}")


def check_input_equals_hidden(name: str, input_size: int, hidden_size: int) -> None:
    """MUT1 and MUT2 add `x` itself to an H-wide sum, so they need `D == H`."""
    if input_size != hidden_size:
        raise ValueError(
            f"{name}({hidden_size}) adds the input x itself to an {hidden_size}-wide "
            f"sum, so it needs input_size == hidden_size == {hidden_size}; got "
            f"input_size={input_size}. Map the inputs to {hidden_size} features first "
            f"(an embedding of width {hidden_size}, or a dense projection)."
        )


def zeros_carry(hidden_size: int) -> Callable[..., jax.Array]:
    """`initial_carry` for a cell whose carry is `h` alone."""

    def initial_carry(batch_shape: tuple = (), dtype=jnp.float32) -> jax.Array:
        return jnp.zeros((*tuple(batch_shape), hidden_size), dtype)

    return initial_carry


def param_initializer(
    name: str,
    hidden_size: int,
    *,
    input_kernels: Sequence[str],
    recurrent_kernels: Sequence[str],
    biases: Sequence[str],
    initializers: inits.Initializers,
    input_must_equal_hidden: bool = False,
    bias_offsets: dict[str, float] | None = None,
) -> Callable[[jax.Array, int], dict[str, jax.Array]]:
    """Build a cell's `init(key, input_size) -> params`.

    `bias_offsets` adds a constant to named biases after the bias initialiser
    (the LSTM's `b_f = forget_bias`).
    """
    if not isinstance(initializers, inits.Initializers):
        raise TypeError(
            f"{name}: initializers must be a recurrax.initializers.Initializers(kernel=..., "
            f"recurrent=..., bias=..., dtype=...), got {type(initializers).__name__}"
        )

    def init(key: jax.Array, input_size: int) -> dict[str, jax.Array]:
        input_size = check_input_size(name, input_size)
        if input_must_equal_hidden:
            check_input_equals_hidden(name, input_size, hidden_size)
        params = inits.init_params(
            key,
            input_kernels=input_kernels,
            recurrent_kernels=recurrent_kernels,
            biases=biases,
            input_size=input_size,
            hidden_size=hidden_size,
            initializers=initializers,
        )
        for bias_name, offset in (bias_offsets or {}).items():
            params[bias_name] = params[bias_name] + jnp.asarray(offset, initializers.dtype)
        return params

    return init


def fused(params: dict[str, jax.Array], names: Sequence[str]) -> jax.Array:
    """Concatenate the named matrices (or vectors) along their last axis, so
    that several projections of one vector become one matmul."""
    if len(names) == 1:
        return params[names[0]]
    return jnp.concatenate([params[n] for n in names], axis=-1)


def recurrent_matmul(params: dict[str, jax.Array], h: jax.Array,
                     names: Sequence[str]) -> jax.Array:
    r"""A step's matmul of (a function of) the carry by recurrent weights:

        a = h · [W_1 | W_2 | …]

    the params `names` concatenated along their last axis (each `(H_in, n_i)`,
    so `a` has `Σ n_i` features, in the order of `names`). Its value is
    always `h @ W`; a cell that computes its recurrent matmuls with it (as
    every built-in cell does) gets the faster derivative of
    `recurrax.scan(weight_grads="after_loop")`: in `scan`'s loop only
    `dh_t = da_t Wᵀ` is computed per step, and the weight gradient
    `dW = Σ_t h_tᵀ da_t` is one GEMM over all `T·batch` rows after the loop
    (`recurrax._deferred`). Forward mode (`jax.jvp`) works as well.

    Use it for matmuls whose weights are the cell's own params, keys at the
    top level of the params dict `scan` is given (else `scan` raises a
    `ValueError`), and whose left factor depends on the carry. Outside `scan`
    (`recurrax.step`), or inside a transformation applied within the step
    (`jax.checkpoint`, `vmap`, `cond`), it is plain `h @ W`, differentiated as
    usual. `h` may have any leading axes.
    """
    kernel_matmul = blocks.active_matmul()  # traced by a fused kernel (recurrax._blocks)
    if kernel_matmul is not None:
        return kernel_matmul(params, h, names)
    return deferred.marked_matmul(h, fused(params, names), names)



def project(
    params: dict[str, jax.Array],
    x: jax.Array,
    kernels: Sequence[str],
    biases: Sequence[str] | None = None,
) -> jax.Array:
    """`x @ [W_1 | W_2 | ...] (+ [b_1 | b_2 | ...])`, on any leading axes of `x`."""
    out = x @ fused(params, kernels)
    if biases:
        out = out + fused(params, biases)
    return out


def linear_prepare(
    name: str, kernels: Sequence[str], biases: Sequence[str]
) -> Callable[[dict[str, jax.Array], jax.Array], jax.Array]:
    """A `prepare` that is one fused matmul: `x [W_1|W_2|...] + [b_1|b_2|...]`."""

    def prepare(params: dict[str, jax.Array], xs: jax.Array) -> jax.Array:
        check_input_features(name, xs, params[kernels[0]].shape[0])
        return project(params, xs, kernels, biases)

    return prepare


def split(a: jax.Array, n: int) -> list[jax.Array]:
    """Split the last axis into `n` equal blocks (the inverse of `fused`); a
    fused kernel's `GateBlocks` give their blocks (recurrax._blocks)."""
    if isinstance(a, blocks.GateBlocks):
        return a.split(n)
    return jnp.split(a, n, axis=-1)


def check_input_features(name: str, x: jax.Array, expected: int) -> None:
    if x.shape[-1:] != (expected,):
        raise ValueError(
            f"{name}: inputs must have {expected} features on their last axis "
            f"(the params' input size); got an array of shape {tuple(x.shape)}"
        )
