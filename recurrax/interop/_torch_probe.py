"""`to_torch`'s check that a `Seq` computes what its params describe.

A `Seq` is a closure: whether it is a residual stack, drops out between
layers, sums its directions or is laid out batch-major cannot be read from it.
So it is compared with the `Seq` that `from_torch` would build for the module
the params describe (the reference), on a small random input:

1. traced only: if both give the same program (jaxpr), they compute the same;
   the usual suspects (the other layout, a residual stack, dropout, summed
   directions) are told apart the same way;
2. otherwise both run, and outputs and final carries must agree to float32
   rounding (a `Seq` built with other options, e.g. `unroll`, or a cell
   written differently, passes; anything else is refused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recurrax.interop._torch_layout import Spec
from recurrax.protocols import Seq

Build = Callable[..., Seq]


def _program(seq: Seq, params: Any, xs: jax.Array, key: jax.Array | None = None):
    """`seq.apply`'s jaxpr as text, and its output shapes (tracing only)."""
    jaxpr, shapes = jax.make_jaxpr(lambda p, x, k: seq.apply(p, x, key=k), return_shape=True)(
        params, xs, key)
    return str(jaxpr), shapes


def _close(a: Any, b: Any) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(np.shape(x) == np.shape(y) and np.allclose(x, y, rtol=1e-5, atol=1e-6)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _run(seq: Seq, params: Any, xs: jax.Array) -> Any:
    with jax.disable_jit():  # 2 small steps run op by op: cheaper than compiling them
        return seq.apply(params, xs)


def check_seq(seq: Seq, params: Any, spec: Spec, build: Build) -> None:
    """A `ValueError` unless `seq.apply(params, xs)` equals `build(spec)`'s
    (outputs and final carry) on a random `xs` of 2 steps and 1 row."""
    dtype = jnp.result_type(*jax.tree.leaves(params))
    T, B = 2, 1  # unequal, so that a transposed layout shows
    shape = (B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)
    xs = jnp.asarray(np.random.default_rng(0).standard_normal(shape), dtype)
    layout = f"batch_first={spec.batch_first}"
    reference = build(spec)
    try:
        got, got_shapes = _program(seq, params, xs)
    except Exception as error:
        raise ValueError(f"to_torch: the Seq fails on these params, which describe a "
                         f"{spec.kind} module of {spec.num_layers} layer(s) "
                         f"({type(error).__name__}: {error})") from error
    want, want_shapes = _program(reference, params, xs)
    got_ys, want_ys = np.shape(got_shapes[1]), np.shape(want_shapes[1])
    if got_ys != want_ys:
        sums = spec.bidirectional and got_ys[:-1] == want_ys[:-1] and (
            got_ys[-1] == spec.hidden_size)
        raise ValueError(
            "to_torch: the Seq sums its two directions (bidirectional(merge='sum')); PyTorch "
            "concatenates them" if sums else
            f"to_torch: the Seq outputs shape {got_ys} on inputs of shape {shape} ({layout}), "
            f"but the PyTorch module the params describe outputs {want_ys}"
        )
    key = jax.random.key(0)
    if spec.num_layers > 1:
        got_random, want_random = (_program(s, params, xs, key)[0] for s in (seq, reference))
        if "random_bits" in got_random and "random_bits" not in want_random:
            raise ValueError("to_torch: the Seq draws random numbers when given a key (a stack "
                             "with dropout > 0); PyTorch's dropout masks cannot be matched, so "
                             "build the stack with dropout=0.0 to convert it")
        same_with_key = got_random == want_random
    else:
        same_with_key = True
    if got == want and same_with_key:
        return
    if got == _program(build(spec._replace(batch_first=not spec.batch_first)), params, xs)[0]:
        raise ValueError(
            f"to_torch: the Seq is laid out {'time' if spec.batch_first else 'batch'}-major, "
            f"but {layout} was asked for; pass batch_first={not spec.batch_first} (or build "
            f"the Seq with time_major={not spec.batch_first})"
        )
    if spec.num_layers > 1 and got == _program(build(spec, residual=True), params, xs)[0]:
        raise ValueError("to_torch: the Seq is a residual stack (stack(residual=True)), "
                         "which PyTorch's modules are not")
    if _close(_run(seq, params, xs), _run(reference, params, xs)):
        return  # the same function, computed another way (e.g. other scan options)
    raise ValueError(
        f"to_torch: the Seq does not compute what its params describe (a {spec.kind} module "
        f"of {spec.num_layers} layer(s){', bidirectional' if spec.bidirectional else ''}, "
        f"{layout}): its outputs on a random input differ from that module's. The module is "
        f"read from the params, so the Seq must be the plain layer, stack or bidirectional "
        f"of the cell they belong to (not reversed, not residual, nothing added)"
    )
