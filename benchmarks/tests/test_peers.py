"""The scan benchmark compares like with like: its peers (Equinox, PyTorch,
the layout of jax.experimental.rnn) compute the same function as recurrax
once their weights are copied across, every JAX implementation does exactly
the matmul FLOPs of `timing.rnn_flops`, and a tiny run writes its records.
Flax's cells are cross-checked in tests/test_flax_crosscheck.py."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import peers, timing
from benchmarks.peers import Shape

SHAPE = Shape(B=3, T=7, D=4, H=6)


def assert_close(actual, desired):
    np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=1e-5)


def from_stacked(cell, W_ih, W_hh, b_ih, b_hh):
    """recurrax params from the PyTorch / Equinox / cuDNN layout: `W_ih (G·H, D)`
    and `W_hh (G·H, H)` stacked by gate (LSTM i, f, g, o; GRU r, z, n) with
    `y = W x + b_ih + ...`; the GRU's `b_hh` n-block sits inside the reset."""
    W_ih, W_hh, b_ih, b_hh = (np.asarray(a, np.float64) for a in (W_ih, W_hh, b_ih, b_hh))
    H = W_hh.shape[1]
    block = lambda a, k: a[k * H:(k + 1) * H]
    if cell == "lstm":
        out = {}
        for k, g in enumerate("ifgo"):
            out[f"W_x{g}"] = block(W_ih, k).T
            out[f"W_h{g}"] = block(W_hh, k).T
            out[f"b_{g}"] = block(b_ih, k) + block(b_hh, k)
        return out
    return {
        "W_xr": block(W_ih, 0).T, "W_xz": block(W_ih, 1).T, "W_xh": block(W_ih, 2).T,
        "W_hr": block(W_hh, 0).T, "W_hz": block(W_hh, 1).T, "W_hh": block(W_hh, 2).T,
        "b_r": block(b_ih, 0) + block(b_hh, 0), "b_z": block(b_ih, 1) + block(b_hh, 1),
        "b_h": block(b_ih, 2), "b_hh": block(b_hh, 2),
    }


def recurrax_ys(cell, params, xs):
    """The benchmark's own recurrax implementation, on copied params."""
    impl = "recurrax-reset-after" if cell == "gru" else "recurrax"
    apply, _, _ = peers.jax_parts(impl, cell, SHAPE, jnp.float32)
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    return np.asarray(jax.jit(apply)(params, xs))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_equinox_matches_recurrax(cell):
    apply, module, xs = peers.jax_parts("equinox", cell, SHAPE, jnp.float32)
    H = SHAPE.H
    b_hh = (np.zeros(4 * H) if cell == "lstm"
            else np.concatenate([np.zeros(2 * H), np.asarray(module.bias_n)]))
    params = from_stacked(cell, module.weight_ih, module.weight_hh, module.bias, b_hh)
    assert_close(recurrax_ys(cell, params, xs), jax.jit(apply)(module, xs))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_matches_recurrax(cell):
    torch = pytest.importorskip("torch")
    module = peers.torch_module(cell, SHAPE.D, SHAPE.H)
    xs = np.random.default_rng(0).standard_normal((SHAPE.T, SHAPE.B, SHAPE.D)).astype(np.float32)
    with torch.no_grad():
        ys = module(torch.from_numpy(xs))[0].numpy()
    w = {name: p.detach().numpy() for name, p in module.named_parameters()}
    params = from_stacked(cell, w["weight_ih_l0"], w["weight_hh_l0"], w["bias_ih_l0"],
                          w["bias_hh_l0"])
    assert_close(recurrax_ys(cell, params, jnp.asarray(xs)), ys)


@pytest.mark.parametrize("backward", [False, True])
def test_torch_thunks_run(backward):
    pytest.importorskip("torch")
    for cell in ("lstm", "gru"):
        for dtype in ("float32", "bfloat16"):
            out = peers.build("torch", cell, SHAPE, dtype, backward)()
            assert len(out) == (5 if backward else SHAPE.T)


def test_jax_cudnn_layout_matches_recurrax(monkeypatch):
    """The cuDNN peer, run on CPU through jax.experimental.rnn's own reference
    (`lstm_ref`) in place of the cuDNN call, with its packed weights unpacked."""
    rnn = pytest.importorskip("jax.experimental.rnn")

    def reference(x, h0, c0, weights, seq_lengths, input_size, hidden_size):
        W_ih, W_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size, 1,
                                                         False)
        return rnn.lstm_ref(x, h0, c0, W_ih, W_hh, b_ih, b_hh, seq_lengths, input_size,
                            hidden_size, 1, 0.0, False)

    monkeypatch.setattr(peers, "cudnn_lstm", reference)
    apply, weights, xs = peers.jax_parts("jax-cudnn", "lstm", SHAPE, jnp.float32)
    W_ih, W_hh, b_ih, b_hh = (a[0] for a in rnn.unpack_lstm_weights(
        weights, SHAPE.D, SHAPE.H, 1, False))
    params = from_stacked("lstm", W_ih, W_hh, b_ih, b_hh)
    ours = recurrax_ys("lstm", params, jnp.swapaxes(xs, 0, 1))
    assert_close(np.swapaxes(ours, 0, 1), jax.jit(apply)(weights, xs))


# The fused kernels' matmuls are inside a pallas_call, out of the jaxpr's sight.
JAX_IMPLS = [(cell, impl) for cell, fam in peers.FAMILIES.items() for impl in fam.impls
             if impl not in ("torch", "jax-cudnn") and not peers.is_kernel(impl)]


@pytest.mark.parametrize("cell,impl", JAX_IMPLS)
def test_matmul_flops_equal_the_formula(cell, impl):
    """Counted from each implementation's jaxpr, forward and forward+backward."""
    shape = SHAPE._replace(D=SHAPE.H) if peers.FAMILIES[cell].needs_d_equals_h else SHAPE
    for backward in (False, True):
        fn, args = peers.jax_function(impl, cell, shape, jnp.float32, backward)
        family = peers.FAMILIES[cell]
        expected = timing.rnn_flops(*shape, family.gates, backward, family.input_gates)
        assert timing.jaxpr_matmul_flops(fn, *args) == expected
    assert timing.lstm_flops(*SHAPE, True) == timing.rnn_flops(*SHAPE, 4, True)


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
def test_tiny_run_writes_records(tmp_path):
    from benchmarks import scan

    out = tmp_path / "bench" / "scan.jsonl"
    text = scan.main(["--tiny", "--out", str(out), "--cells", "lstm",
                      "--impls", "recurrax,torch,jax-cudnn,limit", "--passes", "forward+backward",
                      "--dtypes", "bfloat16", "--compile-lengths", "4", "--unrolls", "1",
                      "--memory-lengths", "4", "--min-sample-ms", "1"])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert {"meta", "throughput", "compile", "memory", "skip"} <= kinds
    rows = [r for r in records if r["kind"] == "throughput"]
    assert {r["impl"] for r in rows} >= {"recurrax", "limit"}  # bfloat16 on CPU
    for r in rows:
        assert {"cell", "impl", "pass", "dtype", "B", "T", "D", "H", "tokens_per_s", "gflops",
                "fraction_of_limit", "ratio_to", "run_id", "device"} <= set(r)
        assert set(r["ratio_to"]) == {x["impl"] for x in rows
                                      if x["dtype"] == r["dtype"]} - {r["impl"]}
    memory = [r for r in records if r["kind"] == "memory"]
    assert {r["remat"] for r in memory} == {False, True}
    assert all("temp_bytes" in r and "total_bytes" in r for r in memory)
    assert "| B, T, D, H | recurrax" in text and "Compile time" in text
    assert out.with_suffix(".md").read_text() == text
    assert (out.parent / "scan_throughput.png").exists()


def test_kernel_rule_reads_the_winners_and_the_goal():
    """The rule and the goal read off throughput records: the kernel enters
    `PALLAS_FASTER` where it beats lax.scan by the margin; the goal needs
    1.5x the faster cuDNN at batch 1 and 1.0x elsewhere."""
    from benchmarks import kernel_rule

    def record(B, impl, tokens):
        return {"kind": "throughput", "cell": "lstm", "pass": "forward+backward",
                "dtype": "float32", "B": B, "H": 256, "impl": impl, "tokens_per_s": tokens}

    speeds = {1: {"recurrax": 100, "recurrax-pallas": 160, "torch": 100, "jax-cudnn": 90},
              64: {"recurrax": 100, "recurrax-pallas": 102, "torch": 90, "jax-cudnn": 101}}
    records = [record(B, impl, t) for B, s in speeds.items() for impl, t in s.items()]
    result = kernel_rule.analyse(kernel_rule.rows(records), margin=1.05)
    assert result["pallas_faster"] == [(1, 256)]  # 1.02x at B=64 is under the margin
    assert result["goal"] == "met"  # 1.6x at B=1, 1.0099x at B=64
    records.append(record(1, "jax-cudnn", 120))  # now only 1.33x the faster cuDNN at B=1
    assert kernel_rule.analyse(kernel_rule.rows(records), 1.05)["goal"] == "not met"
    assert kernel_rule.analyse({}, 1.05)["goal"] == "unmeasured"
