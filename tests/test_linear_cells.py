"""The linear-recurrence cells of issue 17 (minGRU, minLSTM, the LRU):
`recurrax.scan` against NumPy written from the papers' equations, `Cell.linear`
against the sequential `step` (carries and gradients, float64 finite
differences), the log-space scan on its own, the LRU's initialisation, and bad
input."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import recurrax as _recurrax
from recurrax import _linear_scan
from recurrax.initializers import Initializers
from tests.helpers import Tolerance, as_np, finite_difference_grad, to_jax

# Typed Any: the bad-input tests pass what the signatures forbid.
recurrax: Any = _recurrax
cells: Any = _recurrax.cells

NAMES = cells.LINEAR_NAMES
TOL32 = Tolerance(rtol=2e-5, atol=2e-5)  # float32 library against a float64 reference
H, N_LRU = 4, 5  # the LRU gets a state size other than H
KEY = jax.random.key(0)


# --- NumPy references, straight from the papers' equations (no recurrax) -------------------

def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def g(v):  # Feng et al. 2024: keeps the candidate positive
    return np.where(v >= 0, v + 0.5, sigmoid(v))


def mingru_step(p, h, x):
    z = sigmoid(x @ p["W_xz"] + p["b_z"])
    h_tilde = g(x @ p["W_xh"] + p["b_h"])
    h = (1 - z) * h + z * h_tilde
    return h, h


def minlstm_step(p, h, x):
    f = sigmoid(x @ p["W_xf"] + p["b_f"])
    i = sigmoid(x @ p["W_xi"] + p["b_i"])
    h_tilde = g(x @ p["W_xh"] + p["b_h"])
    h = f / (f + i) * h + i / (f + i) * h_tilde
    return h, h


def lru_step(p, x, u):  # Orvieto et al. 2023; x complex
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    B, C = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]
    x = lam * x + np.exp(p["gamma_log"]) * (u @ B)
    return x, (x @ C).real + p["D"] * u


REF_STEPS = {"mingru": mingru_step, "minlstm": minlstm_step, "lru": lru_step}


def param_shapes(name, D):
    if name == "lru":
        return {"B_re": (D, N_LRU), "B_im": (D, N_LRU), "C_re": (N_LRU, H),
                "C_im": (N_LRU, H), "nu_log": (N_LRU,), "theta_log": (N_LRU,),
                "gamma_log": (N_LRU,), "D": (H,)}
    gates = {"mingru": "zh", "minlstm": "fih"}[name]
    return {**{f"W_x{k}": (D, H) for k in gates}, **{f"b_{k}": (H,) for k in gates}}


def random_params(name, D, rng):
    return {k: rng.standard_normal(s) for k, s in param_shapes(name, D).items()}


def ref_run(name, p, xs, lengths=None, reverse=False, carry0=None):
    """Time-major `xs[T, B, D]`: row b runs its steps 0 … lengths[b] − 1
    (backwards with `reverse`), `y = 0` at padded steps. Returns the final
    carries `[B, ...]` (complex for the LRU) and `ys[T, B, H]`."""
    T, B = xs.shape[:2]
    width = N_LRU if name == "lru" else H
    ys, finals = np.zeros((T, B, H)), []
    for b in range(B):
        state = np.zeros(width, complex if name == "lru" else float)
        if carry0 is not None:
            state = state + carry0[b]
        steps = range(T if lengths is None else int(lengths[b]))
        for t in reversed(steps) if reverse else steps:
            state, ys[t, b] = REF_STEPS[name](p, state, xs[t, b])
        finals.append(state)
    return np.stack(finals), ys


def as_ref_carry(name, carry):
    """A library carry as the reference holds it (the LRU's `(re, im)` as complex)."""
    carry = as_np(carry)
    return carry[0] + 1j * carry[1] if name == "lru" else carry


def input_size(name):
    return H if name == "lru" else 3


# --- helpers on the library side ----------------------------------------------------------

def sequential(cell, params, pxs, carry, valid):
    """Every carry of `cell.step` run T times, a step with `valid` False
    leaving the carry as it is: the reference for `cell.linear`."""
    def body(c, inputs):
        px, ok = inputs
        new, _ = cell.step(params, c, px)
        new = jax.tree.map(lambda n, o: jnp.where(ok[..., None], n, o), new, c)
        return new, new

    if valid is None:
        valid = jnp.ones(pxs.shape[:-1], bool)
    return jax.lax.scan(body, carry, (pxs, valid))[1]


def start_carry(name, batch, rng, dtype):
    """A nonzero initial carry; for the min cells a negative one, which the
    paper's log-space form (log h_0) could not take."""
    if name == "lru":
        return tuple(jnp.asarray(rng.standard_normal((*batch, N_LRU)), dtype) for _ in "ri")
    return jnp.asarray(-0.5 - np.abs(rng.standard_normal((*batch, H))), dtype)


def mask(T, batch, rng):
    """Random validity, plus a row whose first steps are invalid and a row
    with no valid step at all."""
    valid = rng.random((T, *batch)) < 0.7
    valid[:3, 0, 0] = False
    valid[:, -1, -1] = False
    return jnp.asarray(valid)


def build(name, **kw):
    if name == "lru":
        return cells.lru(H, state_size=N_LRU, **kw)
    return cells.get(name, H, **kw)


# --- (a) recurrax.scan against the NumPy references ---------------------------------------

@pytest.mark.parametrize("lengths, reverse, given_carry", [
    (None, False, False), (None, True, True), ([7, 0, 3], False, True), ([7, 2, 5], True, False),
])
@pytest.mark.parametrize("name", NAMES)
def test_scan_matches_numpy(name, lengths, reverse, given_carry, rng):
    T, B, D = 7, 3, input_size(name)
    p = random_params(name, D, rng)
    xs = rng.standard_normal((T, B, D))
    cell = build(name)
    carry0 = start_carry(name, (B,), rng, jnp.float32) if given_carry else None
    carry, ys = recurrax.scan(cell, to_jax(p), jnp.asarray(xs, jnp.float32), carry0,
                              lengths=None if lengths is None else jnp.asarray(lengths),
                              reverse=reverse)
    want_carry, want_ys = ref_run(name, p, xs, lengths, reverse,
                                  None if carry0 is None else as_ref_carry(name, carry0))
    np.testing.assert_allclose(np.asarray(ys), want_ys, **TOL32)
    np.testing.assert_allclose(as_ref_carry(name, carry), want_carry, **TOL32)


@pytest.mark.parametrize("name", NAMES)
def test_init_gives_the_documented_names_and_shapes(name):
    D = input_size(name)
    cell = build(name)
    params = cell.init(jax.random.key(0), D)
    assert {k: v.shape for k, v in params.items()} == param_shapes(name, D)
    assert all(v.dtype == jnp.float32 for v in params.values())
    half = build(name, initializers=Initializers(dtype=jnp.bfloat16)).init(jax.random.key(0), D)
    assert all(v.dtype == jnp.bfloat16 for v in half.values())
    assert cell.hidden_size == H and cell.linear is not None


def test_min_cells_take_the_initializers():
    ones = Initializers(kernel=jax.nn.initializers.ones, bias=jax.nn.initializers.ones)
    params = cells.minlstm(H, initializers=ones).init(jax.random.key(0), 3)
    for k in ("W_xf", "W_xi", "W_xh"):
        np.testing.assert_array_equal(np.asarray(params[k]), np.ones((3, H)))
    np.testing.assert_array_equal(np.asarray(params["b_i"]), np.ones(H))
    default = cells.mingru(H).init(jax.random.key(0), 64)  # LeCun normal, zero biases
    assert abs(np.asarray(default["W_xz"]).std() * 8 - 1) < 0.15
    np.testing.assert_array_equal(np.asarray(default["b_h"]), 0.0)


# --- (b) Cell.linear against the sequential step ------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_linear_equals_the_sequential_step(name, dtype, rng):
    """Masked (and in float32 also `valid=None`), from a nonzero initial
    carry (negative for the min cells), two batch axes."""
    T, batch, D = 13, (2, 3), input_size(name)
    with jax.enable_x64(dtype == np.float64):
        cell = build(name)
        params = to_jax(random_params(name, D, rng), dtype)
        pxs = cell.prepare(params, jnp.asarray(rng.standard_normal((T, *batch, D)), dtype))
        carry = start_carry(name, batch, rng, dtype)
        tol = TOL32 if dtype == np.float32 else Tolerance(rtol=1e-12, atol=1e-12)
        masked = mask(T, batch, rng)
        for valid in [masked] + [None] * (dtype == np.float32):
            got = jax.jit(cell.linear)(params, pxs, carry, valid)
            want = jax.jit(sequential, static_argnums=0)(cell, params, pxs, carry, valid)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                assert a.dtype == dtype and a.shape == b.shape
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)
            if valid is masked:  # its last row has no valid step: the carry stays as given
                for a, c in zip(jax.tree.leaves(got), jax.tree.leaves(carry), strict=True):
                    np.testing.assert_array_equal(np.asarray(a[:, -1, -1]),
                                                  np.broadcast_to(c[-1, -1], (T, c.shape[-1])))


# --- (c) gradients through Cell.linear ----------------------------------------------------

def losses(name, rng, dtype, T=8, batch=(2, 3)):
    """`(params, xs, carry)`, the loss `Σ w ⊙ carries` through `cell.linear`,
    and its jitted value and gradient two ways: through `cell.linear` and
    through the sequential step. Masked: leading invalid steps, a row with
    none valid."""
    D = input_size(name)
    cell = build(name)
    params = to_jax(random_params(name, D, rng), dtype)
    xs = jnp.asarray(rng.standard_normal((T, *batch, D)), dtype)
    carry = start_carry(name, batch, rng, dtype)
    valid = mask(T, batch, rng)
    weights = jax.tree.map(lambda c: jnp.asarray(rng.standard_normal((T, *c.shape)), dtype),
                           carry)

    def loss(solve):
        def f(params, xs, carry):
            carries = solve(cell, params, cell.prepare(params, xs), carry, valid)
            return sum(jnp.sum(w * c) for w, c in zip(jax.tree.leaves(weights),
                                                     jax.tree.leaves(carries), strict=True))
        return f

    linear_loss = loss(lambda c, *a: c.linear(*a))
    grads = [jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))
             for f in (linear_loss, loss(sequential))]
    return (params, xs, carry), linear_loss, *grads


@pytest.mark.parametrize("name, dtype", [
    *[(name, np.float64) for name in NAMES], ("minlstm", np.float32),
    *[pytest.param(name, np.float32, marks=pytest.mark.slow) for name in ("mingru", "lru")],
])
def test_linear_gradients_equal_the_sequential_ones(name, dtype, rng):
    """Finite and equal through `linear` and `step`, at ordinary inputs and at
    inputs ×30 (saturated gates, pre-activations near ±100), where `log b =
    −inf` at the masked steps; for minLSTM in float64 also equal to float64
    central finite differences (w.r.t. the params and the initial carry)."""
    with jax.enable_x64(dtype == np.float64):
        (params, xs, carry), linear_loss, linear_grad, sequential_grad = losses(name, rng, dtype)
        rtol = 1e-9 if dtype == np.float64 else 5e-5
        for scale in (1.0, 30.0):
            (value, got), (want_value, want) = (f(params, scale * xs, carry)
                                                for f in (linear_grad, sequential_grad))
            np.testing.assert_allclose(float(value), float(want_value), rtol=rtol)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                assert np.all(np.isfinite(np.asarray(a)))
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol,
                                           atol=rtol * float(np.abs(np.asarray(b)).max()))
        if dtype == np.float32 or name != "minlstm":  # one case against finite differences
            return
        flat, unravel = ravel_pytree((params, carry))

        def f(v):
            params, carry = unravel(v)
            return linear_loss(params, xs, carry)

        _, (d_params, _, d_carry) = linear_grad(params, xs, carry)
        got = ravel_pytree((d_params, d_carry))[0]
        numeric = jax.jit(finite_difference_grad, static_argnums=0)(f, flat)
        np.testing.assert_allclose(np.asarray(got), np.asarray(numeric), rtol=1e-6, atol=1e-8)


def test_lru_scan_gradients_after_the_loop_equal_in_loop(rng):
    """The LRU marks its readout matmuls (`x_re C_re`, `x_im C_im`) for
    `scan`'s after-loop weight gradients; they equal JAX's own."""
    p = to_jax(random_params("lru", H, rng))
    xs = jnp.asarray(rng.standard_normal((9, 2, H)), jnp.float32)

    def grads(weight_grads):
        def loss(params):
            carry, ys = recurrax.scan(build("lru"), params, xs, weight_grads=weight_grads,
                                      lengths=jnp.asarray([9, 4]))
            return jnp.sum(ys**2) + jnp.sum(carry[0] * carry[1])
        return jax.jit(jax.grad(loss))(p)

    after, in_loop = grads("after_loop"), grads("in_loop")
    for k in p:
        np.testing.assert_allclose(np.asarray(after[k]), np.asarray(in_loop[k]),
                                   rtol=1e-5, atol=1e-6)


# --- the log-space scan on its own --------------------------------------------------------

def numpy_recurrence(a, b, h0, reverse=False):
    h, out = h0, np.zeros(np.broadcast_shapes(a.shape, b.shape))
    for t in reversed(range(len(a))) if reverse else range(len(a)):
        h = out[t] = a[t] * h + b[t]
    return out


@pytest.mark.parametrize("reverse", [False, True])
def test_log_diagonal_solves_the_recurrence(reverse, rng):
    """Values against NumPy; gradients (w.r.t. log a, log b and h0) finite and
    equal to those through the recurrence run step by step, also where
    `log b = −inf` for a stretch (there `jnp.logaddexp` would give NaN)."""
    T = 12
    log_a = -np.abs(rng.standard_normal((T, 5)))
    log_b = rng.standard_normal((T, 5))
    log_b[2:5, 1] = -np.inf  # b = 0 for a while
    log_b[:, 3] = -np.inf  # and throughout: h_t = a*_t h_0
    h0 = np.array([-1.5, 0.0, 2.0, -0.3, 0.7])
    w = rng.standard_normal((T, 5))
    with jax.enable_x64(True):
        args = jnp.asarray(log_a), jnp.asarray(log_b), jnp.asarray(h0)
        got = jax.jit(_linear_scan.log_diagonal, static_argnames="reverse")(*args,
                                                                            reverse=reverse)
        np.testing.assert_allclose(
            np.asarray(got), numpy_recurrence(np.exp(log_a), np.exp(log_b), h0, reverse),
            rtol=1e-12, atol=1e-14)

        def stepwise(log_a, log_b, h0):
            def body(h, ab):
                h = jnp.exp(ab[0]) * h + jnp.exp(ab[1])
                return h, h
            return jax.lax.scan(body, h0, (log_a, log_b), reverse=reverse)[1]

        def loss(solve):
            return jax.jit(jax.grad(lambda *a: jnp.sum(w * solve(*a)), argnums=(0, 1, 2)))

        got = loss(functools.partial(_linear_scan.log_diagonal, reverse=reverse))(*args)
        for a, b in zip(got, loss(stepwise)(*args), strict=True):
            assert np.all(np.isfinite(np.asarray(a)))
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


def test_log_diagonal_stays_accurate_over_long_decays_in_float32(rng):
    """4000 steps of decay (a*_T ≈ −3000): float32 within 1e-5 of the float64
    recurrence (the difference of two cumulative sums would be off by ~4e-4)."""
    T = 4000
    log_a = -np.logaddexp(0.0, rng.standard_normal((T, 4)))
    log_b = rng.standard_normal((T, 4)) - 1.0
    h0 = np.array([-2.0, -0.5, 0.5, 2.0])
    want = numpy_recurrence(np.exp(log_a), np.exp(log_b), h0)
    got = jax.jit(_linear_scan.log_diagonal)(jnp.asarray(log_a, jnp.float32),
                                    jnp.asarray(log_b, jnp.float32), jnp.asarray(h0, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


# --- (d) the LRU's initialisation ---------------------------------------------------------

def lambdas(params):
    p = as_np(params)
    return np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"])), np.exp(p["gamma_log"])


@pytest.mark.parametrize("r_min, r_max, max_phase", [(0.0, 1.0, 2 * np.pi), (0.4, 0.9, 0.3),
                                                     (0.99, 0.999, np.pi / 10)])
def test_lru_init_is_stable_normalised_and_on_the_ring(r_min, r_max, max_phase):
    N, D = 512, 64
    cell = cells.lru(D, state_size=N, r_min=r_min, r_max=r_max, max_phase=max_phase)
    params = cell.init(jax.random.key(3), D)
    lam, gamma = lambdas(params)
    assert np.all(np.abs(lam) < 1)
    assert np.all(np.isfinite(np.concatenate([np.asarray(v).ravel() for v in params.values()])))
    np.testing.assert_allclose(gamma**2 + np.abs(lam) ** 2, 1.0, rtol=2e-6)
    assert np.all((np.abs(lam) >= r_min - 1e-6) & (np.abs(lam) <= r_max + 1e-6))
    # |λ|² uniform on [r_min², r_max²], the phase uniform on [0, max_phase]
    assert abs(np.mean(np.abs(lam) ** 2) - (r_min**2 + r_max**2) / 2) < 0.05 * (r_max**2
                                                                              - r_min**2)
    phase = np.exp(np.asarray(params["theta_log"], np.float64))
    assert phase.max() <= max_phase * (1 + 1e-6) and abs(phase.mean() / max_phase - 0.5) < 0.05
    p = as_np(params)
    for k in ("B_re", "B_im"):  # (N(0,1) + i N(0,1)) / sqrt(2D)
        assert abs(p[k].std() * np.sqrt(2 * D) - 1) < 0.03
    for k in ("C_re", "C_im"):  # / sqrt(N)
        assert abs(p[k].std() * np.sqrt(N) - 1) < 0.03
    assert abs(p["D"].std() - 1) < 0.3  # N(0, 1), 64 draws


def test_lru_state_size_defaults_to_the_hidden_size():
    shapes = jax.eval_shape(lambda k: cells.lru(6).init(k, 6), KEY)
    assert shapes["nu_log"].shape == (6,) and shapes["B_re"].shape == (6, 6)


# --- (e) names and bad input --------------------------------------------------------------

def test_get_builds_all_thirteen_and_only_the_linear_ones_set_linear():
    assert cells.LINEAR_NAMES == ("mingru", "minlstm", "lru")
    assert len(cells.NAMES) == 10 and not set(cells.NAMES) & set(cells.LINEAR_NAMES)
    for name in cells.NAMES + cells.LINEAR_NAMES:
        cell = cells.get(name, H)
        assert isinstance(cell, recurrax.Cell) and cell.hidden_size == H
        assert (cell.linear is not None) == (name in cells.LINEAR_NAMES), name


BAD = [
    ("lru-input-ne-hidden", lambda: cells.lru(H).init(KEY, 3), ValueError,
     r"lru\(4\) .*input_size == hidden_size == 4; got input_size=3.*embedding"),
    ("lru-scan-input-ne-hidden",
     lambda: recurrax.scan(cells.lru(H), cells.lru(H).init(KEY, H), jnp.zeros((2, 1, 3))),
     ValueError, r"input_size == hidden_size == 4; got input_size=3"),
    ("mingru-hidden-zero", lambda: cells.mingru(0), ValueError,
     r"mingru: hidden_size must be a positive int, got 0"),
    ("minlstm-hidden-float", lambda: cells.minlstm(4.0), TypeError,
     r"minlstm: hidden_size must be a positive int, got float 4.0 \(use hidden_size=4\)"),
    ("lru-hidden-bool", lambda: cells.lru(True), TypeError, r"lru: hidden_size .*bool"),
    ("mingru-input-float", lambda: cells.mingru(H).init(KEY, 3.0), TypeError,
     r"mingru: input_size must be a positive int, got float 3.0"),
    ("minlstm-input-zero", lambda: cells.minlstm(H).init(KEY, 0), ValueError,
     r"minlstm: input_size must be a positive int, got 0"),
    ("lru-state-zero", lambda: cells.lru(H, state_size=0), ValueError, r"lru: state_size"),
    ("lru-state-bool", lambda: cells.lru(H, state_size=True), TypeError, r"lru: state_size"),
    ("lru-state-float", lambda: cells.lru(H, state_size=8.0), TypeError,
     r"lru: state_size.*float 8.0 \(use 8\)"),
    ("lru-r_min-negative", lambda: cells.lru(H, r_min=-0.1), ValueError,
     r"0 <= r_min <= r_max <= 1.*r_min=-0.1"),
    ("lru-r_max-above-one", lambda: cells.lru(H, r_max=1.5), ValueError, r"r_max=1.5"),
    ("lru-r_min-above-r_max", lambda: cells.lru(H, r_min=0.9, r_max=0.5), ValueError,
     r"r_min=0.9, r_max=0.5"),
    ("lru-r_min-one", lambda: cells.lru(H, r_min=1.0, r_max=1.0), ValueError, r"r_min < 1"),
    ("lru-r_min-str", lambda: cells.lru(H, r_min="0.5"), TypeError,
     r"lru: r_min must be a number, got str"),
    ("lru-r_max-bool", lambda: cells.lru(H, r_max=True), TypeError, r"lru: r_max .*bool"),
    ("lru-max_phase-nan", lambda: cells.lru(H, max_phase=float("nan")), ValueError,
     r"lru: max_phase must be finite"),
    ("lru-max_phase-zero", lambda: cells.lru(H, max_phase=0), ValueError,
     r"lru: max_phase must be > 0"),
    ("lru-initializers-dict", lambda: cells.lru(H, initializers={}), TypeError,
     r"lru: initializers must be a recurrax.initializers.Initializers"),
    ("mingru-initializers-dict", lambda: cells.mingru(H, initializers={}), TypeError,
     r"mingru: initializers must be"),
    ("get-unknown", lambda: cells.get("min-gru", H), ValueError,
     r"unknown cell name 'min-gru'; expected one of: rnn, .*mut3 \(NAMES\) or "
     r"mingru, minlstm, lru \(LINEAR_NAMES\)"),
    ("get-name-none", lambda: cells.get(None, H), TypeError,
     r"name must be a str, one of: rnn.*mut3 \(NAMES\) or mingru.*lru \(LINEAR_NAMES\)"),
    ("get-lru-unknown-option", lambda: cells.get("lru", H, forget_bias=1.0), TypeError,
     r"forget_bias"),
]


@pytest.mark.parametrize("thunk, error, words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_with_a_message(thunk, error, words):
    with pytest.raises(error, match=words):
        thunk()


def test_numpy_sizes_and_options_work_as_python_ones():
    a = cells.lru(np.int64(H), state_size=np.int32(3), r_min=np.float32(0.5), r_max=np.int64(1))
    b = cells.lru(H, state_size=3, r_min=0.5, r_max=1.0)
    pa, pb = a.init(KEY, H), b.init(KEY, H)
    assert a.hidden_size == H and type(a.hidden_size) is int
    for k in pb:
        np.testing.assert_array_equal(np.asarray(pa[k]), np.asarray(pb[k]))
    assert cells.get("minlstm", np.int16(3)).hidden_size == 3
