"""The fused Pallas kernels (`recurrax.kernels.scan`), run in Pallas's
interpreter on the CPU: values and gradients against `recurrax.scan` (exact
in float64; in float32 and in the bfloat16-matmul mode, errors against the
float64 scan), the lowering to Triton for a GPU, `scan(kernel=...)` and the
refusals."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax import kernels
from recurrax.kernels import KernelUnsupported
from recurrax.kernels import _scan as kernel_scan
from recurrax.kernels import _step as kernel_step
from tests import reference as ref
from tests.helpers import build, input_size

scan_module = importlib.import_module("recurrax.scan")
GATED = ["lstm", "lstm-i", "lstm-f", "lstm-o", "lstm-b", "gru", "gru-reset-after",
         "mut1", "mut2", "mut3"]
T, B, H = 6, 3, 8


def problem(name, dtype, seed=0, H=H):
    """A cell, random params (biases included), inputs, an initial carry and
    lengths with an empty row and a full one."""
    cell = build(name, H)
    D = input_size(name, H, 5)
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(v, dtype) for k, v in ref.random_params(name, D, H, rng).items()}
    xs = jnp.asarray(rng.standard_normal((T, B, D)), dtype)
    carry = jax.tree.map(lambda c: jnp.asarray(rng.standard_normal((B, H)), dtype),
                         cell.initial_carry((B,)))
    lengths = jnp.asarray([T, 0, T - 2])
    return cell, params, xs, carry, lengths


def outputs_and_grads(run, cell, params, xs, carry, lengths, reverse):
    """`(carry, ys)` and the gradients of a loss of both with respect to the
    params, the inputs and the initial carry."""
    weights = jnp.asarray(np.random.default_rng(7).standard_normal((T, B, H)), xs.dtype)

    def loss(params, xs, carry):
        final, ys = run(cell, params, xs, carry, lengths=lengths, reverse=reverse)
        return (jnp.sum(weights * ys) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(final)),
                (final, ys))

    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry)
    return jax.tree.map(lambda a: np.asarray(a, np.float64), (out, grads))


def fused(interpret=True, **options):
    return lambda *args, **kw: kernels.scan(*args, interpret=interpret, **options, **kw)


def relative_error(a, exact):
    """The largest over leaves of max |a − exact| / max |exact|."""
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(exact), strict=True))


def max_error(a, b):
    return max(float(np.max(np.abs(x - y), initial=0.0))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in ("lstm-i", "lstm-o", "lstm-b") else n
    for n in ["rnn", *GATED]])
def test_float64_values_and_gradients_equal_scan(name):
    """Every gated cell, lengths (an empty row), a random initial carry,
    reverse for every other cell, a batch padded to a tile of 2."""
    reverse = name in GATED and GATED.index(name) % 2 == 1
    with jax.enable_x64(True):
        args = problem(name, jnp.float64)
        want = outputs_and_grads(recurrax.scan, *args, reverse)
        got = outputs_and_grads(fused(tile=2), *args, reverse)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    assert max_error(got, want) < 1e-12


def test_weights_read_at_every_step_give_the_same_numbers(monkeypatch):
    """Weights too large to stay in a program are read at every step: same
    numbers, and still a Triton program."""
    monkeypatch.setattr(kernel_step, "RESIDENT_BYTES", 0)
    with jax.enable_x64(True):
        args = problem("gru", jnp.float64)
        want = outputs_and_grads(recurrax.scan, *args, False)
        got = outputs_and_grads(fused(tile=2), *args, False)
    assert max_error(got, want) < 1e-12
    lowers_to_triton("lstm", monkeypatch)


def float32_errors(name, matmul_dtype, reverse=False):
    """Largest relative errors (`relative_error`) against the float64 scan of:
    the kernel (in float32, or with `matmul_dtype` matmuls) and
    `recurrax.scan` in float32."""
    with jax.enable_x64(True):
        args64 = problem(name, jnp.float64, seed=1)
        exact = outputs_and_grads(recurrax.scan, *args64, reverse)
        cell, params, xs, carry, lengths = args64
        params, xs, carry = jax.tree.map(lambda a: a.astype(jnp.float32), (params, xs, carry))
        args32 = (cell, params, xs, carry, lengths)
        kernel = outputs_and_grads(fused(matmul_dtype=matmul_dtype), *args32, reverse)
        scan32 = outputs_and_grads(recurrax.scan, *args32, reverse)
    return relative_error(kernel, exact), relative_error(scan32, exact)


@pytest.mark.parametrize("name", ["lstm", "gru-reset-after",
                                  *(pytest.param(n, marks=pytest.mark.slow) for n in
                                    ["lstm-i", "lstm-f", "lstm-o", "lstm-b", "gru", "mut1",
                                     "mut2", "mut3"])])
def test_float32_is_as_accurate_as_scan(name):
    """In float32 the kernel's relative error against the float64 scan
    (values and gradients) is that of `recurrax.scan` in float32, within a
    factor 4."""
    kernel, scan32 = float32_errors(name, None, reverse=name.startswith("gru"))
    assert kernel < 4 * scan32 + 1e-7, (kernel, scan32)


@pytest.mark.parametrize("name", ["lstm",
                                  *(pytest.param(n, marks=pytest.mark.slow) for n in
                                    ["lstm-i", "lstm-f", "lstm-o", "lstm-b", "gru",
                                     "gru-reset-after",
                                     "mut1", "mut2", "mut3"])])
def test_bfloat16_matmuls_keep_bfloat16_accuracy(name):
    """With bfloat16 matmuls (float32 carry and accumulation) the relative
    error against the float64 scan is that of rounding the operands to
    bfloat16 (unit roundoff 2⁻⁹, times the few roundings each value goes
    through: measured 0.2–1 %); and the kernel does round (it is not float32)."""
    kernel, scan32 = float32_errors(name, jnp.bfloat16)
    assert kernel < 8 * 2.0 ** -8
    assert kernel > 100 * scan32  # the operands really were rounded


def test_time_major_false_and_several_batch_axes():
    cell, params, xs, carry, _ = problem("gru", jnp.float32)
    xs = jnp.stack([xs, 2 * xs], axis=1)  # [T, 2, B, D]
    bm = jnp.moveaxis(xs, 0, 2)  # [2, B, T, D]
    lengths = jnp.asarray([[T, 1, 3], [0, T, 2]])
    want = recurrax.scan(cell, params, bm, time_major=False, lengths=lengths)
    got = kernels.scan(cell, params, bm, time_major=False, lengths=lengths, interpret=True,
                       tile=4)
    assert max_error(got, want) < 1e-6
    assert got[1].shape == (2, B, T, H)


def test_jit_and_vmap_compose():
    cell, params, xs, carry, lengths = problem("lstm", jnp.float32)
    run = jax.jit(lambda p, x: kernels.scan(cell, p, x, interpret=True)[1])
    many = jnp.stack([xs, -xs])
    got = jax.vmap(run, in_axes=(None, 0))(params, many)
    want = jnp.stack([recurrax.scan(cell, params, x)[1] for x in many])
    assert max_error(got, want) < 1e-6


def test_scan_kernel_option():
    """`kernel="pallas"` runs the kernel (in the interpreter here), same
    numbers as `kernel="scan"`; `kernel=None` on the CPU is `lax.scan`; the
    options the kernel does not take are refused by name."""
    cell, params, xs, carry, lengths = problem("mut2", jnp.float32)
    a = recurrax.scan(cell, params, xs, carry, lengths=lengths, kernel="pallas")
    b = recurrax.scan(cell, params, xs, carry, lengths=lengths, kernel="scan")
    c = recurrax.scan(cell, params, xs, carry, lengths=lengths)
    assert max_error(a, b) < 1e-6 and max_error(b, c) == 0.0
    for option in [{"remat": True}, {"unroll": 2}, {"hoist": False},
                   {"weight_grads": "in_loop"}]:
        with pytest.raises(ValueError, match=f"kernel='pallas' takes {next(iter(option))}"):
            recurrax.scan(cell, params, xs, kernel="pallas", **option)
    with pytest.raises(ValueError, match="kernel must be one of 'pallas', 'scan'"):
        recurrax.scan(cell, params, xs, kernel="triton")  # pyright: ignore[reportArgumentType]


def test_default_kernel_rule(monkeypatch):
    """`scan` on the CPU never picks the interpreter; on a GPU the kernel runs
    exactly for the measured winners in `PALLAS_FASTER`."""
    assert scan_module.default_kernel(1, 256, "cpu") == "scan"
    monkeypatch.setattr(scan_module, "PALLAS_FASTER", frozenset({(1, 256)}))
    assert scan_module.default_kernel(1, 256, "gpu") == "pallas"
    assert scan_module.default_kernel(1, 512, "gpu") == "scan"
    assert scan_module.default_kernel(1, 256, "cpu") == "scan"


@pytest.mark.parametrize("name", GATED)
def test_lowers_to_triton_for_a_gpu(name, monkeypatch):
    """The forward and backward kernels of every cell, in float32 and with
    bfloat16 matmuls, lower to Triton (every operation has a Triton form and
    every array a power-of-two size); compiling and running them needs a GPU."""
    lowers_to_triton(name, monkeypatch)


def lowers_to_triton(name, monkeypatch):
    monkeypatch.setattr(kernel_scan, "backend", lambda: "gpu")
    cell = build(name, 16)
    params = cell.init(jax.random.PRNGKey(0), 16)
    xs = jnp.ones((3, 20, 16))
    for matmul_dtype in [None, jnp.bfloat16]:
        def loss(p, x, matmul_dtype=matmul_dtype):
            _, ys = kernels.scan(cell, p, x, lengths=jnp.full((20,), 2), reverse=True,
                                 matmul_dtype=matmul_dtype)
            return ys.sum()
        text = jax.jit(jax.grad(loss)).trace(params, xs).lower(
            lowering_platforms=("cuda",)).as_text()
        assert text.count("xla.gpu.triton") == 2  # one forward, one backward launch


def test_refusals(monkeypatch):
    cell, params, xs, carry, lengths = problem("lstm", jnp.float32)
    with pytest.raises(KernelUnsupported, match="interpret=False runs on a GPU"):
        kernels.scan(cell, params, xs)
    with pytest.raises(ValueError, match="matmul_dtype must be one of"):
        kernels.scan(cell, params, xs, interpret=True, matmul_dtype=jnp.float16)
    with pytest.raises(ValueError, match="tile must be a positive int"):
        kernels.scan(cell, params, xs, interpret=True, tile=0)
    with pytest.raises(TypeError, match="interpret"):
        kernels.scan(cell, params, xs, interpret="yes")  # pyright: ignore[reportArgumentType]
    mingru = recurrax.cells.mingru(H)
    with pytest.raises(KernelUnsupported, match="no recurrent matmul"):
        kernels.scan(mingru, mingru.init(jax.random.PRNGKey(0), 5), xs, interpret=True)
    lru = recurrax.cells.lru(H)
    with pytest.raises(KernelUnsupported, match="fused gates"):
        kernels.scan(lru, lru.init(jax.random.PRNGKey(0), H), jnp.ones((T, B, H)),
                     interpret=True)

    monkeypatch.setattr(kernel_scan, "backend", lambda: "gpu")
    with pytest.raises(KernelUnsupported, match="hidden size must be a power of two"):
        jax.eval_shape(lambda p, x: kernels.scan(cell, p, x), params, xs)


def test_a_step_that_needs_the_fused_gates_is_refused():
    """A step that applies a function to all gates at once cannot run on gate
    blocks; the kernel says so instead of computing something else."""
    base = recurrax.cells.lstm(H)

    def step(params, carry, px):
        c, h = carry
        a = jnp.tanh(px + recurrax.cells.recurrent_matmul(params, h, ["W_hi", "W_hf", "W_hg",
                                                                      "W_ho"]))
        c = c * a[..., :H]
        return (c, h), h

    cell = base._replace(step=step)
    params = cell.init(jax.random.PRNGKey(0), 5)
    xs = jnp.ones((T, B, 5))
    with pytest.raises(KernelUnsupported, match="fused gates"):
        kernels.scan(cell, params, xs, interpret=True)


def test_a_graph_compiled_cell_runs_in_the_kernels():
    """Cells compiled from the search's graphs mark their matmuls and keep
    H-wide gates too, so the kernels take them unchanged."""
    from recurrax.search import baselines, graph

    cell = graph.compile(baselines.GRAPHS["gru"], H)
    params = cell.init(jax.random.key(0), H)
    xs = jax.random.normal(jax.random.key(1), (T, B, H))
    lengths = jnp.asarray([T, 0, 2])
    got = kernels.scan(cell, params, xs, lengths=lengths, interpret=True)
    assert max_error(got, recurrax.scan(cell, params, xs, lengths=lengths)) < 1e-6
