"""The implementations the scan benchmark times, each built for one cell,
shape and dtype as a zero-argument thunk (jitted; the first call compiles).

Cells (families) and the implementations of each:

- `lstm`: recurrax `cells.lstm(H)`; Flax linen `nn.RNN(LSTMCell)` and
  `nn.RNN(OptimizedLSTMCell)`; Equinox `LSTMCell` under `lax.scan`; PyTorch
  `nn.LSTM`; `jax.experimental.rnn.lstm` (cuDNN, GPU only); the limit.
- `gru`: recurrax `cells.gru(H)` (reset before the recurrent matmul) and
  `cells.gru(H, reset_after=True)` (the form of the peers); Flax
  `nn.RNN(GRUCell)`; Equinox `GRUCell`; PyTorch `nn.GRU`; the limit.
- `mut1`: recurrax `cells.mut1(H)` (needs D == H); the limit.
- `lstm-i`, `lstm-f`, `lstm-o`, `lstm-b`, `mut2` (D == H), `mut3`: recurrax
  and the limit (none for MUT2, whose input and recurrent matmuls differ in
  width), to hold the other gated cells' speed against the LSTM's.

Every recurrax cell also runs as `<id>-pallas`: `recurrax.kernels.scan`, the
fused Pallas kernels (float32; in bfloat16 the mixed mode, bfloat16 matmuls
with a float32 carry). They run on a GPU only, since Pallas's interpreter is
a tool for testing, not a speed (`RECURRAX_BENCH_INTERPRET=1` runs it anyway,
for a smoke run on the CPU).

Every implementation reads its natural layout (recurrax, Equinox, PyTorch
time-major `[T, B, D]`; Flax and cuDNN batch-major `[B, T, D]`), starts from a
zero carry and returns all outputs `ys`. The JAX implementations draw their
params (each in its own tree) uniform in ±1/√H, PyTorch with its own
initialiser (the same rule). "forward" computes `ys`;
"forward+backward" computes `sum(ys)` and its gradient with respect to the
params and the inputs `xs` (what a layer inside a network needs).

The limit is the same matmuls with the time dependency removed: one GEMM
`xs (B·T, D) @ W_x (D, G·H)` for all input projections and one
`hs (B·T, H) @ W_h (H, G·H)` for all recurrent ones (the states of every step
at once, given), then `tanh` of their sum; its backward takes gradients for
`W_x`, `W_h`, `xs` and `hs`. `G` is the family's gate count. Its matmul FLOPs
are exactly `timing.rnn_flops` (checked in tests/test_bench_peers.py).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

import recurrax

# PyTorch's OpenMP threads spin at every barrier by default. On a CPU shared
# with other processes (this project's 2 cores), a descheduled thread then
# stalls the others for whole time slices: nn.LSTM's forward+backward measured
# 7 s instead of 22 ms at (B, T, D, H) = (1, 256, 128, 256). Sleeping threads
# cost ~1.3× in a quiet torch-only process but keep it sane; set before torch
# is imported (an explicit OMP_WAIT_POLICY wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class Shape(NamedTuple):
    B: int
    T: int
    D: int
    H: int


class Family(NamedTuple):
    gates: int              # G in `timing.rnn_flops`: matmul width G·H per step
    impls: tuple[str, ...]  # implementation ids, recurrax first, the limit last
    needs_d_equals_h: bool = False
    input_gates: int | None = None  # width of the input matmul when it differs (MUT2: 2)


FAMILIES = {
    "lstm": Family(4, ("recurrax", "recurrax-pallas", "flax-LSTMCell", "flax-OptimizedLSTMCell",
                       "equinox", "torch", "jax-cudnn", "limit")),
    "gru": Family(3, ("recurrax", "recurrax-reset-after", "recurrax-pallas",
                      "recurrax-reset-after-pallas", "flax-GRUCell", "equinox", "torch",
                      "limit")),
    "mut1": Family(2, ("recurrax", "recurrax-pallas", "limit"), needs_d_equals_h=True),
    **{name: Family(gates, ("recurrax", "recurrax-pallas", "limit"))
       for name, gates in (("lstm-i", 3), ("lstm-f", 3), ("lstm-o", 3), ("lstm-b", 4),
                           ("mut3", 3))},
    "mut2": Family(3, ("recurrax", "recurrax-pallas"), needs_d_equals_h=True, input_gates=2),
}

PASSES = ("forward", "forward+backward")
HOIST = {"auto": None, "true": True, "false": False}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def is_recurrax(impl: str) -> bool:
    return impl.startswith("recurrax")


def is_kernel(impl: str) -> bool:
    """A recurrax implementation through the fused kernels (no hoist setting)."""
    return impl.split("+")[0].endswith("-pallas")


def recurrax_id(impl: str, hoist: str) -> str:
    """The id of a recurrax implementation run with `scan(hoist=...)`:
    `recurrax` for the default rule, `recurrax+hoist` / `recurrax+nohoist`."""
    return impl if hoist == "auto" else f"{impl}+{'hoist' if hoist == 'true' else 'nohoist'}"


def gpu_present() -> bool:
    """A CUDA GPU is JAX's default backend (its devices report platform "gpu")."""
    return any(d.platform in ("gpu", "cuda") for d in jax.devices())


def unavailable(impl: str, dtype: str) -> str | None:
    """Why `impl` cannot run here in `dtype`, or None if it can."""
    base = impl.split("+")[0]
    if is_kernel(base) and not gpu_present() and os.environ.get("RECURRAX_BENCH_INTERPRET") != "1":
        return "the fused kernels run on a GPU (Pallas's interpreter is no measure of speed)"
    if base == "torch":
        try:
            import_torch()
        except Exception as err:  # ImportError, or a broken install
            return f"torch not importable ({type(err).__name__}: {err})"
    if base == "equinox":
        try:
            import equinox  # noqa: F401
        except Exception as err:
            return f"equinox not importable ({type(err).__name__}: {err})"
    if base == "jax-cudnn":
        if not gpu_present():
            return "jax.experimental.rnn runs on a CUDA GPU only (cuDNN)"
        if dtype != "float32":
            return "jax.experimental.rnn lowers float32 only"
        try:
            from jax.experimental import rnn  # noqa: F401
        except Exception as err:
            return f"jax.experimental.rnn not importable ({type(err).__name__}: {err})"
    return None


# ---------------------------------------------------------------------------
# JAX implementations: each gives (apply, params, xs) with apply(params, xs) -> ys.

# Inputs and casts go through NumPy and inits through one jit each: eager JAX
# ops would compile one small program per op and shape (seconds per cell).

def _normal(seed: int, shape, dtype, scale: float = 1.0) -> jax.Array:
    a = scale * np.random.default_rng(seed).standard_normal(shape, np.float32)
    return jnp.asarray(a.astype(dtype))


def _inputs(shape: Shape, dtype, batch_major: bool) -> jax.Array:
    B, T, D, _ = shape
    return _normal(1, (B, T, D) if batch_major else (T, B, D), dtype)


def _cast(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a).astype(dtype)), tree)


def recurrax_cell(cell: str, H: int, reset_after: bool = False) -> recurrax.Cell:
    if cell == "gru":
        return recurrax.cells.gru(H, reset_after=reset_after)
    return recurrax.cells.get(cell, H)


@functools.lru_cache(maxsize=64)
def _initial(impl: str, cell: str, D: int, H: int):
    """Float32 params in the tree of an implementation, drawn once per cell and
    size (every dtype and pass reuses them) as NumPy arrays, uniform in
    ±1/√H (PyTorch's rule) for every implementation. The tree comes from the
    implementation's own initialiser under `jax.eval_shape`, so nothing is
    compiled (XLA CPU takes seconds to compile a random initialiser)."""
    impl = impl.removesuffix("-pallas")
    if impl in ("recurrax", "recurrax-reset-after"):
        rcell = recurrax_cell(cell, H, reset_after=impl == "recurrax-reset-after")
        tree = jax.eval_shape(lambda: rcell.init(jax.random.key(0), D))
    elif impl.startswith("flax-"):  # the cell's params, inside nn.RNN's tree
        import flax.linen as nn

        module = getattr(nn, impl.removeprefix("flax-"))(H)
        x = jax.ShapeDtypeStruct((1, D), jnp.float32)
        carry = jax.eval_shape(lambda: module.initialize_carry(jax.random.key(0), x.shape))
        cell_params = jax.eval_shape(lambda c, x: module.init(jax.random.key(0), c, x), carry, x)
        tree = {"params": {"cell": cell_params["params"]}}
    elif impl == "equinox":
        import equinox as eqx

        cls = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[cell]
        tree = jax.eval_shape(lambda: cls(D, H, key=jax.random.key(0)))
    else:
        raise ValueError(f"no initialiser for {impl!r}")
    rng = np.random.default_rng(0)
    bound = 1.0 / np.sqrt(H)
    return jax.tree.map(lambda a: rng.uniform(-bound, bound, a.shape).astype(np.float32), tree)


def _recurrax(cell, shape, dtype, *, reset_after=False, kernel=False, **scan_kw):
    rcell = recurrax_cell(cell, shape.H, reset_after)
    impl = "recurrax-reset-after" if reset_after else "recurrax"
    params = _cast(_initial(impl, cell, shape.D, shape.H), dtype)

    def apply(params, xs):
        if kernel:
            from recurrax import kernels

            matmul_dtype = jnp.bfloat16 if dtype == jnp.bfloat16 else None
            return kernels.scan(rcell, params, xs, matmul_dtype=matmul_dtype,
                                interpret=not gpu_present())[1]
        return recurrax.scan(rcell, params, xs, **scan_kw)[1]

    return apply, params, _inputs(shape, dtype, batch_major=False)


def _flax(cell_name, shape, dtype):
    import flax.linen as nn

    # drawn in float32 (the orthogonal initialiser's QR has no bfloat16 kernel on CPU)
    params = _cast(_initial(f"flax-{cell_name}", "", shape.D, shape.H), dtype)
    module = nn.RNN(getattr(nn, cell_name)(shape.H, dtype=dtype, param_dtype=dtype))
    return module.apply, params, _inputs(shape, dtype, batch_major=True)


def _equinox(cell, shape, dtype):
    module = _cast(_initial("equinox", cell, shape.D, shape.H), dtype)

    def apply(module, xs):  # Equinox cells are unbatched: vmap over the batch
        zeros = jnp.zeros((xs.shape[1], shape.H), xs.dtype)
        carry0 = (zeros, zeros) if cell == "lstm" else zeros

        def body(carry, x):
            carry = jax.vmap(module)(x, carry)
            return carry, carry[0] if cell == "lstm" else carry

        return jax.lax.scan(body, carry0, xs)[1]

    return apply, module, _inputs(shape, dtype, batch_major=False)


def cudnn_lstm(x, h0, c0, weights, seq_lengths, input_size,
               hidden_size) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`jax.experimental.rnn.lstm`, one layer, one direction, no dropout
    (a module-level function so tests can stand in for it on CPU): (ys, h_n, c_n)."""
    from jax.experimental import rnn

    out = rnn.lstm(x, h0, c0, weights, seq_lengths=seq_lengths, input_size=input_size,
                   hidden_size=hidden_size, num_layers=1, dropout=0.0, bidirectional=False)
    # `partial(custom_vjp, ...)` as a decorator hides rnn.lstm's return type from the checker
    return cast(tuple[jax.Array, jax.Array, jax.Array], out)


def _jax_cudnn(shape, dtype):
    from jax.experimental import rnn

    B, T, D, H = shape
    size = rnn.get_num_params_in_lstm(D, H, 1, False)  # as init_lstm_weight, without jax.random
    weights = jnp.asarray(np.random.default_rng(0).uniform(-H ** -0.5, H ** -0.5, size)
                          .astype(np.float32).astype(dtype))

    def apply(weights, xs):
        zeros = jnp.zeros((1, B, H), xs.dtype)
        lengths = jnp.full((B,), T, jnp.int32)
        return cudnn_lstm(xs, zeros, zeros, weights, lengths, D, H)[0]

    return apply, weights, _inputs(shape, dtype, batch_major=True)


def _limit(gates, shape, dtype):
    B, T, D, H = shape
    params = (
        _normal(2, (D, gates * H), dtype, 0.01),   # W_x
        _normal(3, (H, gates * H), dtype, 0.01),   # W_h
        _normal(4, (B * T, H), dtype),             # every step's h
    )

    def apply(params, xs):
        Wx, Wh, hs = params
        return jnp.tanh(xs.reshape(-1, D) @ Wx + hs @ Wh)

    return apply, params, _inputs(shape, dtype, batch_major=False)


def jax_parts(impl: str, cell: str, shape: Shape, dtype,
              **scan_kw) -> tuple[Callable[..., Any], Any, jax.Array]:
    """(apply, params, xs) of a JAX implementation; `scan_kw` go to
    `recurrax.scan` (unroll, remat, hoist)."""
    base = impl.split("+")[0]
    if base in ("recurrax", "recurrax-reset-after", "recurrax-pallas",
                "recurrax-reset-after-pallas"):
        return _recurrax(cell, shape, dtype, reset_after=base.startswith("recurrax-reset-after"),
                         kernel=is_kernel(base), **scan_kw)
    if base.startswith("flax-"):
        return _flax(base.removeprefix("flax-"), shape, dtype)
    if base == "equinox":
        return _equinox(cell, shape, dtype)
    if base == "jax-cudnn":
        return _jax_cudnn(shape, dtype)
    if base == "limit":
        return _limit(FAMILIES[cell].gates, shape, dtype)
    raise ValueError(f"unknown implementation {impl!r}")


def loss_and_grad(apply: Callable) -> Callable:
    """`(params, xs) -> (sum(ys), (d/dparams, d/dxs))`, the sum in float32."""
    def loss(params, xs):
        return jnp.sum(apply(params, xs), dtype=jnp.float32)

    return jax.value_and_grad(loss, argnums=(0, 1))


def jax_function(impl, cell, shape, dtype, backward: bool, **scan_kw):
    """(fn, args): the un-jitted function of one pass and its arguments, for
    timing (`jax.jit(fn)(*args)`) or compiling (`jax.jit(fn).lower(*args)`)."""
    apply, params, xs = jax_parts(impl, cell, shape, dtype, **scan_kw)
    return (loss_and_grad(apply) if backward else apply), (params, xs)


# ---------------------------------------------------------------------------
# PyTorch

def import_torch() -> Any:
    """PyTorch, an optional peer (the `bench` extra): imported by name, so
    that the benchmarks load and type-check without it."""
    return importlib.import_module("torch")


def torch_module(cell: str, D: int, H: int):
    torch = import_torch()

    torch.manual_seed(0)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](D, H)  # time-major


def _torch_thunk(cell: str, shape: Shape, dtype: str, backward: bool):
    torch = import_torch()

    device = "cuda" if gpu_present() and torch.cuda.is_available() else "cpu"
    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    module = torch_module(cell, shape.D, shape.H).to(device=device, dtype=tdtype)
    xs = torch.randn(shape.T, shape.B, shape.D, device=device, dtype=tdtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    wrt = [*module.parameters(), xs.requires_grad_(True)]

    def forward():
        with torch.no_grad():
            ys = module(xs)[0]
        sync()
        return ys

    def forward_backward():
        ys = module(xs)[0]
        grads = torch.autograd.grad(ys.sum(dtype=torch.float32), wrt)
        sync()
        return grads

    return forward_backward if backward else forward


# ---------------------------------------------------------------------------

def build(impl: str, cell: str, shape: Shape, dtype: str, backward: bool,
          **scan_kw) -> Callable[[], Any]:
    """A zero-argument thunk running one pass of `impl` on `cell` at `shape`."""
    if impl.split("+")[0] == "torch":
        return _torch_thunk(cell, shape, dtype, backward)
    if impl.startswith("recurrax") and "+" in impl:
        scan_kw = dict(scan_kw, hoist=impl.endswith("+hoist"))
    fn, args = jax_function(impl, cell, shape, DTYPES[dtype], backward, **scan_kw)
    return functools.partial(jax.jit(fn), *args)
