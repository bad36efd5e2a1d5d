r"""`recurrax.metrics.lyapunov.largest_lyapunov_exponent` against independent
references: linear cells whose exponent is known in closed form (log max|a|,
log of the spectral radius), the vanilla RNN against the power iteration
written in NumPy from J_t = diag(1 − h_{t+1}²) W_hhᵀ in float64, and the LSTM
against the same iteration on central finite-difference Jacobians of the
reference step (`tests/reference.py`).

v_0 is written here from the docstring's formula, u_k = 1 + ½ sin(1 + 2.4 k)."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax.metrics.lyapunov import largest_lyapunov_exponent
from tests import reference as ref


def v0(K):
    u = 1 + 0.5 * np.sin(1 + 2.4 * np.arange(K))
    return u / np.linalg.norm(u)


def power_iteration(Js, v):
    """(1/n) Σ_t log ‖J_t v_t‖, v_{t+1} = J_t v_t / ‖J_t v_t‖, in NumPy."""
    total = 0.0
    for J in Js:
        w = J @ v
        total += np.log(np.linalg.norm(w))
        v = w / np.linalg.norm(w)
    return total / len(Js)


def linear_cell(H, dense=False):
    """h' = a ⊙ h + x (`dense=False`) or h' = h W + x, the input added as is (D = H)."""
    def init(key, D):
        del key
        return {"W": jnp.zeros((D, D))} if dense else {"a": jnp.zeros(D)}

    def step(params, h, px):
        h = h @ params["W"] + px if dense else params["a"] * h + px
        return h, h

    return recurrax.Cell(init, lambda batch_shape=(), dtype=jnp.float32:
                         jnp.zeros((*batch_shape, H), dtype), lambda params, xs: xs, step, H)


def test_diagonal_linear_cell_is_log_max_abs_a(rng):
    H, B = 5, 3
    a = np.array([0.3, -0.9, 0.5, 0.8, -0.2])
    cell = linear_cell(H)
    with jax.enable_x64(True):
        for n in (1, 7, 40):  # exact: the sum telescopes to log ‖a^n ⊙ v_0‖
            xs = jnp.asarray(rng.standard_normal((n, B, H)))
            lam = largest_lyapunov_exponent(cell, {"a": jnp.asarray(a)}, xs)
            assert lam.shape == (B,)
            np.testing.assert_allclose(lam, np.log(np.linalg.norm(a ** n * v0(H))) / n,
                                       rtol=1e-12)
        n = 3000  # and the limit: log max|a| + (1/n) log(‖a^n v_0‖ / max|a|^n),
        lam = largest_lyapunov_exponent(cell, {"a": jnp.asarray(a)}, jnp.zeros((n, B, H)))
        # the correction lies in [(1/n) log v_0[argmax], 0]
        k = np.argmax(np.abs(a))
        assert np.all(lam <= np.log(0.9) + 1e-12)
        assert np.all(lam >= np.log(0.9) + np.log(v0(H)[k]) / n - 1e-12)
    lam32 = largest_lyapunov_exponent(cell, {"a": jnp.asarray(a, jnp.float32)},
                                      jnp.zeros((n, B, H)))
    np.testing.assert_allclose(lam32, np.log(0.9), atol=abs(np.log(v0(H)[k])) / n + 1e-5)


def test_dense_linear_cell_is_log_spectral_radius(rng):
    H, B = 6, 2
    cell = linear_cell(H, dense=True)
    W = rng.standard_normal((H, H)) / np.sqrt(H)  # non-normal, eigenvalues complex
    with jax.enable_x64(True):
        n = 30  # exact: (1/n) log ‖(Wᵀ)^n v_0‖ (h W is Wᵀ acting on column vectors)
        lam = largest_lyapunov_exponent(cell, {"W": jnp.asarray(W)}, jnp.ones((n, B, H)))
        expected = np.log(np.linalg.norm(np.linalg.matrix_power(W.T, n) @ v0(H))) / n
        np.testing.assert_allclose(lam, expected, rtol=1e-10)
        # The limit: W = Q diag(d) Qᵀ (dense, symmetric, spectral radius 0.95).
        Q, _ = np.linalg.qr(rng.standard_normal((H, H)))
        d = np.array([0.95, -0.7, 0.5, 0.3, -0.1, 0.05])
        W = Q @ np.diag(d) @ Q.T
        rho = np.max(np.abs(np.linalg.eigvals(W)))
        np.testing.assert_allclose(rho, 0.95)  # the reference spectral radius
        n = 2000
        lam = largest_lyapunov_exponent(cell, {"W": jnp.asarray(W)}, jnp.zeros((n, B, H)))
        # ‖Wⁿ v_0‖ = ‖(d^n ⊙ Qᵀ v_0)‖ lies in [ρⁿ |q_1·v_0|, ρⁿ]
        low = np.log(rho) + np.log(abs(Q[:, 0] @ v0(H))) / n
        assert np.all(lam <= np.log(rho) + 1e-12) and np.all(lam >= low - 1e-12)


def rnn_params(rng, D, H, gain):
    p = ref.random_params("rnn", D, H, rng)
    p["W_hh"] = gain * rng.standard_normal((H, H)) / np.sqrt(H)
    return p


def rnn_reference(p, xs, h0):
    """λ̂ of one row of the vanilla RNN: the trajectory, J_t = diag(1 − h_{t+1}²) W_hhᵀ
    (row vectors: h' = tanh(x W_xh + h W_hh + b_h)) and the power iteration."""
    h, Js = h0, []
    for x in xs:
        h, _ = ref.rnn_step(p, h, x)
        Js.append(np.diag(1 - h ** 2) @ p["W_hh"].T)
    return power_iteration(Js, v0(len(h0)))


def test_rnn_against_numpy_power_iteration(rng):
    T, B, D, H = 25, 3, 4, 5
    p = rnn_params(rng, D, H, 1.5)
    xs = rng.standard_normal((T, B, D))
    h0 = 0.5 * rng.standard_normal((B, H))
    cell = recurrax.cells.rnn(H)
    with jax.enable_x64(True):
        jp = {k: jnp.asarray(v) for k, v in p.items()}
        lam = largest_lyapunov_exponent(cell, jp, jnp.asarray(xs), jnp.asarray(h0))
        lam_bm = largest_lyapunov_exponent(cell, jp, jnp.asarray(xs.transpose(1, 0, 2)),
                                           jnp.asarray(h0), time_major=False)
        lam_10 = largest_lyapunov_exponent(cell, jp, jnp.asarray(xs), jnp.asarray(h0), steps=10)
        lam_big = largest_lyapunov_exponent(cell, jp, jnp.asarray(xs), jnp.asarray(h0),
                                            steps=10**6)
    for b in range(B):
        np.testing.assert_allclose(lam[b], rnn_reference(p, xs[:, b], h0[b]), rtol=1e-10)
        np.testing.assert_allclose(lam_10[b], rnn_reference(p, xs[:10, b], h0[b]), rtol=1e-10)
    np.testing.assert_allclose(lam_bm, lam, rtol=1e-12)
    np.testing.assert_array_equal(lam_big, lam)  # steps beyond T: all T


def test_lstm_against_finite_differences(rng):
    T, D, H, eps = 8, 3, 4, 1e-6
    p = ref.random_params("lstm", D, H, rng)
    xs = rng.standard_normal((T, 1, D))
    s0 = 0.5 * rng.standard_normal(2 * H)  # [c, h]

    def flat_step(s, x):
        (c, h), _ = ref.lstm_step(p, (s[:H], s[H:]), x)
        return np.concatenate([c, h])

    s, Js = s0, []
    for x in xs[:, 0]:
        Js.append(np.stack([(flat_step(s + eps * e, x) - flat_step(s - eps * e, x)) / (2 * eps)
                            for e in np.eye(2 * H)], axis=-1))
        s = flat_step(s, x)
    with jax.enable_x64(True):
        lam = largest_lyapunov_exponent(recurrax.cells.lstm(H),
                                        {k: jnp.asarray(v) for k, v in p.items()},
                                        jnp.asarray(xs), (jnp.asarray(s0[None, :H]),
                                                          jnp.asarray(s0[None, H:])))
    assert lam.shape == (1,)
    np.testing.assert_allclose(lam[0], power_iteration(Js, v0(2 * H)), rtol=1e-7)


def test_sign_contracting_and_chaotic_rnn(rng):
    T, B, D, H = 400, 2, 4, 64
    cell = recurrax.cells.rnn(H)
    xs = jnp.asarray(0.1 * rng.standard_normal((T, B, D)), jnp.float32)
    for gain, sign in ((0.5, -1), (3.0, 1)):
        p = {k: jnp.asarray(v, jnp.float32) for k, v in rnn_params(rng, D, H, gain).items()}
        p["b_h"] = jnp.zeros(H)
        lam = largest_lyapunov_exponent(cell, p, xs, 0.5 * jnp.ones((B, H)))
        assert lam.dtype == jnp.float32 and lam.shape == (B,)
        assert np.all(np.sign(np.asarray(lam)) == sign), (gain, lam)
        if sign < 0:  # |J_t v| <= ‖W_hh‖₂ since |1 − h²| <= 1
            assert np.all(np.asarray(lam) <= np.log(np.linalg.norm(p["W_hh"], 2)) + 1e-5)


def test_lstm_gru_and_batch_axes_run(rng):
    for name in ("lstm", "gru"):
        cell = recurrax.cells.get(name, 8)
        params = cell.init(jax.random.key(0), 3)
        lam = largest_lyapunov_exponent(cell, params, jnp.ones((20, 2, 3, 3)))
        assert lam.shape == (2, 3) and np.all(np.isfinite(lam))
        lam_bm = largest_lyapunov_exponent(cell, params, jnp.ones((2, 3, 20, 3)),
                                           time_major=False)
        np.testing.assert_allclose(lam_bm, lam, rtol=1e-6)


def test_bad_arguments_are_refused():
    cell = recurrax.cells.rnn(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.ones((5, 2, 3))
    lle: Any = largest_lyapunov_exponent  # called with wrong kinds on purpose
    cases = [
        (TypeError, "cell", lambda: lle("rnn", params, xs)),
        (TypeError, "xs", lambda: lle(cell, params, [[1.0, 2.0, 3.0]])),
        (ValueError, "xs", lambda: lle(cell, params, jnp.ones(3))),
        (ValueError, "at least one time step", lambda: lle(cell, params, jnp.ones((0, 2, 3)))),
        (ValueError, "params", lambda: lle(cell, params, jnp.ones((5, 2, 7)))),
        (ValueError, "carry", lambda: lle(cell, params, xs, jnp.zeros((3, 4)))),
        (TypeError, "steps", lambda: lle(cell, params, xs, steps=2.0)),
        (TypeError, "steps", lambda: lle(cell, params, xs, steps=True)),
        (ValueError, "steps", lambda: lle(cell, params, xs, steps=0)),
        (TypeError, "time_major", lambda: lle(cell, params, xs, time_major="no")),
    ]
    for error, match, call in cases:
        with pytest.raises(error, match=match):
            call()
    assert lle(cell, params, xs, steps=np.int64(2)).shape == (2,)  # NumPy ints are sizes
