"""Flax's cells with their weights copied into recurrax give the same sequences."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from tests.helpers import Tolerance

TOL = Tolerance(rtol=1e-5, atol=1e-5)
B, T, D, H = 3, 9, 4, 6


def flax_params(module, rng):
    """Flax params, every entry (biases too) redrawn at random."""
    x = jnp.zeros((B, D))
    carry = module.initialize_carry(jax.random.key(0), x.shape)
    params = module.init(jax.random.key(1), carry, x)["params"]
    return jax.tree.map(lambda a: jnp.asarray(0.5 * rng.standard_normal(a.shape), a.dtype),
                        params)


def lstm_from_flax(fp):
    out = {}
    for g in "ifgo":
        out[f"W_x{g}"] = fp[f"i{g}"]["kernel"]
        out[f"W_h{g}"] = fp[f"h{g}"]["kernel"]
        out[f"b_{g}"] = fp[f"h{g}"]["bias"]
    return out


def gru_from_flax(fp):
    return {
        "W_xr": fp["ir"]["kernel"], "W_xz": fp["iz"]["kernel"], "W_xh": fp["in"]["kernel"],
        "W_hr": fp["hr"]["kernel"], "W_hz": fp["hz"]["kernel"], "W_hh": fp["hn"]["kernel"],
        "b_r": fp["ir"]["bias"], "b_z": fp["iz"]["bias"], "b_h": fp["in"]["bias"],
        "b_hh": fp["hn"]["bias"],
    }


def rnn_from_flax(fp):
    return {"W_xh": fp["i"]["kernel"], "W_hh": fp["h"]["kernel"], "b_h": fp["i"]["bias"]}


CASES = {
    "LSTMCell": (nn.LSTMCell, recurrax.cells.lstm, lstm_from_flax),
    "OptimizedLSTMCell": (nn.OptimizedLSTMCell, recurrax.cells.lstm, lstm_from_flax),
    "GRUCell": (nn.GRUCell, lambda h: recurrax.cells.gru(h, reset_after=True), gru_from_flax),
    "SimpleCell": (nn.SimpleCell, recurrax.cells.rnn, rnn_from_flax),
}


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_whole_sequences_match_flax(case, with_lengths, rng):
    flax_cls, ours, convert = CASES[case]
    module = flax_cls(H)
    fp = flax_params(module, rng)
    xs = jnp.asarray(rng.standard_normal((B, T, D)), jnp.float32)  # Flax is batch-major
    lengths = jnp.array([T, 4, 1]) if with_lengths else None

    flax_carry, flax_ys = nn.RNN(module, return_carry=True).apply(
        {"params": {"cell": fp}}, xs, seq_lengths=lengths)
    carry, ys = recurrax.scan(ours(H), convert(fp), xs, lengths=lengths, time_major=False)

    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), carry, flax_carry)
    row_lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    valid = np.arange(T)[None, :] < row_lengths[:, None]  # Flax leaves padding unspecified
    np.testing.assert_allclose(np.asarray(ys)[valid], np.asarray(flax_ys)[valid], **TOL)
