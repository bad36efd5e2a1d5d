r"""`recurrax.metrics.gradient_flow.gradient_flow` against independent NumPy references, in
float64: for the vanilla RNN the analytic Jacobians J_t = diag(1 − h_{t+1}²) W_hhᵀ
multiplied out, for the LSTM central finite differences of the reference
steps in `tests/reference.py`; and the experiment's CLI end to end.

State index t = 0 … T: s_0 the initial carry, s_t the carry after step t; a
bump of s_t also bumps that step's output, y_t = h_t."""

import json
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax.metrics.gradient_flow import gradient_flow
from tests import reference as ref

T, B, D, H = 6, 2, 3, 4
EPS = 1e-6


def setup(name, rng):
    cell = recurrax.cells.get(name, H)
    p = ref.random_params(name, D, H, rng)
    xs = rng.standard_normal((T, B, D))
    K = 2 * H if ref.is_lstm(name) else H
    s0 = 0.5 * rng.standard_normal((B, K))  # flat initial carry, [c, h] for the LSTM
    w = rng.standard_normal((T, B, H))
    return cell, p, xs, s0, w


def jax_carry(name, s0):
    s0 = jnp.asarray(s0)
    return (s0[..., :H], s0[..., H:]) if ref.is_lstm(name) else s0


def np_loss(ys, final, w):
    """L = Σ w ⊙ ys + Σ cos(s_T), in NumPy."""
    return np.sum(w * ys) + np.sum(np.cos(final))


def jax_loss(w):
    """The same L, in JAX, as `loss_fn(ys, final_carry)`."""
    def loss(ys, carry):
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(carry))
    return loss


def run_row(name, p, xs, s0, bumps=None):
    """One row: `xs [T, D]`, flat carry `s0 [K]`; `bumps[t]` is added to s_t.
    Returns the flat states s_0 … s_T and the outputs y_1 … y_T."""
    bumps = bumps or {}
    lstm = ref.is_lstm(name)
    s = s0 + bumps.get(0, 0.0)
    states, ys = [s], []
    for t in range(len(xs)):
        carry, _ = ref.STEPS[name](p, (s[:H], s[H:]) if lstm else s, xs[t])
        s = (np.concatenate(carry) if lstm else carry) + bumps.get(t + 1, 0.0)
        states.append(s)
        ys.append(s[-H:])
    return np.array(states), np.array(ys)


def run_all(name, p, xs, s0, b=None, bumps=None):
    """All rows (`bumps` only in row `b`): final states `[B, K]`, ys `[T, B, H]`."""
    rows = [run_row(name, p, xs[:, r], s0[r], bumps if r == b else None) for r in range(B)]
    return np.stack([st[-1] for st, _ in rows]), np.stack([y for _, y in rows], axis=1)


def fd_jacobian(f, x):
    """Central differences: column j is (f(x + ε e_j) − f(x − ε e_j)) / 2ε."""
    cols = [(f(x + EPS * e) - f(x - EPS * e)) / (2 * EPS) for e in np.eye(len(x))]
    return np.stack(cols, axis=-1)


def fd_loss_grad(name, p, xs, s0, w, t, b):
    """∂L/∂h_t of row b by central differences."""
    K = s0.shape[-1]

    def loss(dh):
        bump = np.zeros(K)
        bump[K - H:] = dh
        final, ys = run_all(name, p, xs, s0, b, {t: bump})
        return np_loss(ys, final, w)

    return np.array([(loss(EPS * e) - loss(-EPS * e)) / (2 * EPS) for e in np.eye(H)])


def test_rnn_against_analytic_jacobians(rng):
    cell, p, xs, s0, w = setup("rnn", rng)
    with jax.enable_x64(True):  # batch shape (1, B): any number of leading batch axes
        flow = gradient_flow(cell, {k: jnp.asarray(v) for k, v in p.items()},
                             jnp.asarray(xs)[:, None], jax_carry("rnn", s0[None]),
                             loss_fn=jax_loss(jnp.asarray(w)[:, None]))
    assert flow.spectral_norm is not None  # asked for: spectral=True by default
    assert flow.jacobian_norm.shape == (T + 1, 1, B) and flow.spectral_norm.shape == (T, 1, B)
    flow = jax.tree.map(lambda a: a[:, 0] if a.ndim else a, flow)
    for b in range(B):
        hs, _ = run_row("rnn", p, xs[:, b], s0[b])
        # J_t = ∂h_{t+1}/∂h_t = diag(1 − h_{t+1}²) W_hhᵀ (row vectors: h' = tanh(h W_hh + ...))
        Js = [np.diag(1 - hs[t + 1] ** 2) @ p["W_hh"].T for t in range(T)]
        product = np.eye(H)  # ∂h_T/∂h_t, built from t = T down to 0
        for t in range(T, -1, -1):
            np.testing.assert_allclose(flow.jacobian_norm[t, b], np.linalg.norm(product), rtol=1e-9)
            if t > 0:
                product = product @ Js[t - 1]
        np.testing.assert_allclose(flow.spectral_norm[:, b],
                                   [np.linalg.svd(J, compute_uv=False)[0] for J in Js], rtol=1e-9)
    np.testing.assert_allclose(flow.state_jacobian_norm, flow.jacobian_norm)
    final, ys = run_all("rnn", p, xs, s0)
    np.testing.assert_allclose(flow.loss, np_loss(ys, final, w), rtol=1e-12)
    for t, b in [(0, 0), (3, 1), (T, 0)]:
        expected = np.linalg.norm(fd_loss_grad("rnn", p, xs, s0, w, t, b))
        np.testing.assert_allclose(flow.loss_grad_norm[t, b], expected, rtol=1e-6)


def test_lstm_against_finite_differences(rng):
    cell, p, xs, s0, w = setup("lstm", rng)
    with jax.enable_x64(True):
        flow = gradient_flow(cell, {k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(xs),
                             jax_carry("lstm", s0), loss_fn=jax_loss(jnp.asarray(w)))
    assert flow.spectral_norm is not None and flow.loss_grad_norm is not None
    for b in range(B):
        states, _ = run_row("lstm", p, xs[:, b], s0[b])
        for t in range(T + 1):  # the full Jacobian ∂s_T/∂s_t, s = [c, h]
            J = fd_jacobian(lambda d, b=b, t=t: run_row("lstm", p, xs[:, b], s0[b], {t: d})[0][-1],
                            np.zeros(2 * H))
            np.testing.assert_allclose(flow.state_jacobian_norm[t, b], np.linalg.norm(J), rtol=1e-6)
            np.testing.assert_allclose(flow.jacobian_norm[t, b], np.linalg.norm(J[H:, H:]),
                                       rtol=1e-6)
        for t in range(T):  # one step's Jacobian ∂s_{t+1}/∂s_t on the trajectory
            J = fd_jacobian(lambda s, b=b, t=t: run_row("lstm", p, xs[t:t + 1, b], s)[0][-1],
                            states[t])
            np.testing.assert_allclose(flow.spectral_norm[t, b],
                                       np.linalg.svd(J, compute_uv=False)[0], rtol=1e-6)
    for t in range(T + 1):
        for b in range(B):
            expected = np.linalg.norm(fd_loss_grad("lstm", p, xs, s0, w, t, b))
            np.testing.assert_allclose(flow.loss_grad_norm[t, b], expected, rtol=1e-6)


def test_without_loss_or_spectral_those_are_none(rng):
    cell = recurrax.cells.rnn(3)
    p = {k: jnp.asarray(v, jnp.float32) for k, v in ref.random_params("rnn", 2, 3, rng).items()}
    flow = gradient_flow(cell, p, jnp.asarray(rng.standard_normal((5, 2, 2)), jnp.float32),
                         spectral=False)
    assert flow.loss is None and flow.loss_grad_norm is None and flow.spectral_norm is None
    assert flow.jacobian_norm.shape == (6, 2)
    np.testing.assert_allclose(flow.jacobian_norm[-1], np.sqrt(3), rtol=1e-6)  # ∂h_T/∂h_T = I


def test_bad_input_names_the_argument(rng):
    cell = recurrax.cells.lstm(4)
    p = {k: jnp.asarray(v, jnp.float32) for k, v in ref.random_params("lstm", 3, 4, rng).items()}
    xs = jnp.zeros((5, 2, 3))
    with pytest.raises(ValueError, match=r"xs: expected an array of layout \[T, \*batch, D\]"):
        gradient_flow(cell, p, jnp.zeros(3))
    with pytest.raises(ValueError, match="at least one time step"):
        gradient_flow(cell, p, jnp.zeros((0, 2, 3)))
    with pytest.raises(ValueError, match=r"xs .*shape \(5, 2, 7\)"):
        gradient_flow(cell, p, jnp.zeros((5, 2, 7)))
    with pytest.raises(ValueError, match="carry: got"):
        gradient_flow(cell, p, xs, jnp.zeros((2, 4)))
    with pytest.raises(TypeError, match="loss_fn: expected a callable"):
        gradient_flow(cell, p, xs, loss_fn=cast(Any, 3.0))  # not a callable, on purpose
    with pytest.raises(ValueError, match=r"loss_fn: must return a scalar, got shape \(2, 4\)"):
        gradient_flow(cell, p, xs, loss_fn=lambda ys, carry: carry[1])


def test_experiment_cli_smoke(tmp_path, capsys):
    from experiments import gradient_flow as experiment

    experiment.main(["--preset", "smoke", "--out", str(tmp_path)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["preset"] == "smoke" and result["T"] == 12
    assert (tmp_path / "gradient_flow.png").stat().st_size > 0
    assert json.loads((tmp_path / "result.json").read_text())["settings"] == result["settings"]
    rnn = result["settings"]
    assert rnn["rnn s=0.5"]["ratio_T"] < rnn["rnn s=1.0"]["ratio_T"] < rnn["rnn s=1.5"]["ratio_T"]
    assert all(s["clipped_grad_norm"] <= result["clip"] * (1 + 1e-5) for s in rnn.values())
