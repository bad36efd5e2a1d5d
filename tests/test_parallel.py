"""`recurrax.parallel`: the same `(carry, ys)` and gradients as `recurrax.scan`
for every cell and method, the failure paths, the `auto` rule, and the
solver's parts (linear scans, the damped Kalman step, the LAPACK-free solve)
against NumPy written from their equations.

x64 is switched on inside each test (`jax.enable_x64`): the references are
float64, so a tolerance near float64 rounding means the maths is the same."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import recurrax
from recurrax import _linear_scan, parallel
from recurrax.parallel import kalman
from recurrax.search import graph as G
from recurrax.search import universal
from recurrax.search.baselines import GRAPHS
from tests.helpers import build, input_size

T, B, H, D = 12, 3, 4, 3
LENGTHS = np.array([12, 7, 0])
TOL = dict(rtol=1e-9, atol=1e-10)
EPS = 1e-6  # finite-difference step


def _setup(cell, key=0, D_in=D, scale=1.0):
    params = cell.init(jax.random.PRNGKey(key), D_in)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    xs = scale * jax.random.normal(jax.random.PRNGKey(key + 1), (T, B, D_in), jnp.float64)
    carry = jax.tree.map(lambda c: 0.2 + 0.1 * jnp.arange(c.size, dtype=c.dtype).reshape(c.shape)
                         / c.size, cell.initial_carry((B,), jnp.float64))
    return params, xs, carry


def _loss(run, cell, params, xs, carry, **kw):
    c, ys = run(cell, params, xs, carry, **kw)
    return jnp.sum(jnp.sin(ys) * jnp.arange(1, ys.shape[-1] + 1)) + sum(
        jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(c))


def _grads(run, cell, params, xs, carry, **kw):
    return jax.jit(jax.grad(functools.partial(_loss, run, cell, **kw), argnums=(0, 1, 2)))(
        params, xs, carry)


def _assert_trees_close(got, want, **tol):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def _same_as_scan(cell, params, xs, carry, method="quasi-deer", max_iters=None, **kw):
    want = recurrax.scan(cell, params, xs, carry, **kw)
    got = jax.jit(lambda p, x, c: parallel.solve(cell, p, x, c, method=method,
                                                 max_iters=max_iters, **kw))(params, xs, carry)
    _assert_trees_close(got[:2], want, **TOL)
    return got[2]


# Every built-in cell, each method on some of them, forwards and backwards in time.
#: (dense ELK compiles slowest: on the smallest cell only).
CASES = [(name, "elk" if name == "rnn" else ("deer", "quasi-deer", "quasi-elk")[i % 3],
          bool(i % 2 == 0)) for i, name in enumerate(recurrax.cells.NAMES)]
#: In the default run: every undamped method and quasi-ELK once, on cells of each
#: kind of carry (dense ELK: `test_damped_step_...` below); the rest with `-m slow`
#: (`make test-all`).
DEFAULT = ("lstm", "lstm-f", "gru", "mut1")


@pytest.mark.parametrize("name,method,reverse", [
    pytest.param(*case, marks=() if case[0] in DEFAULT else pytest.mark.slow) for case in CASES])
def test_values_and_gradients_equal_scan(name, method, reverse):
    with jax.enable_x64(True):
        cell = build(name, H)
        params, xs, carry = _setup(cell, D_in=input_size(name, H, D))
        info = _same_as_scan(cell, params, xs, carry, lengths=LENGTHS, reverse=reverse,
                             method=method)
        assert bool(info.converged) and bool(info.parallel) and info.method == method
        assert 0 < int(info.iterations) <= (T if "deer" in method else 100)
        kw = dict(lengths=LENGTHS, reverse=reverse)
        _assert_trees_close(_grads(functools.partial(parallel.scan, method=method), cell,
                                   params, xs, carry, **kw),
                            _grads(recurrax.scan, cell, params, xs, carry, **kw), **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("method", parallel.METHODS)
def test_every_method_on_the_gru_both_directions(method):
    with jax.enable_x64(True):
        cell = recurrax.cells.gru(H)
        params, xs, carry = _setup(cell, key=3)
        for reverse in (False, True):
            _same_as_scan(cell, params, xs, carry, reverse=reverse, method=method)
            _assert_trees_close(
                _grads(functools.partial(parallel.scan, method=method), cell, params, xs, carry,
                       reverse=reverse),
                _grads(recurrax.scan, cell, params, xs, carry, reverse=reverse), **TOL)


def test_deer_is_newton_quadratic_and_quasi_needs_more():
    """DEER's first k steps are exact after k iterations, and it converges in
    far fewer than T; quasi-DEER's diagonal costs iterations."""
    with jax.enable_x64(True):
        cell = recurrax.cells.lstm(H)
        params, xs, carry = _setup(cell, key=5)
        deer = _same_as_scan(cell, params, xs, carry, method="deer")
        quasi = _same_as_scan(cell, params, xs, carry, method="quasi-deer")
        assert int(deer.iterations) < int(quasi.iterations) <= T
        assert int(deer.iterations) <= 7


def test_gradients_match_float64_finite_differences():
    """Directional derivatives along random directions of (params, xs, carry)."""
    with jax.enable_x64(True):
        cell = recurrax.cells.lstm(H)
        params, xs, carry = _setup(cell, key=7)
        loss = jax.jit(functools.partial(_loss, parallel.scan, cell, lengths=LENGTHS,
                                         reverse=True))
        point = (params, xs, carry)
        grads = jax.grad(loss, argnums=(0, 1, 2))(*point)
        for k in range(3):
            leaves, treedef = jax.tree.flatten(point)
            keys = jax.random.split(jax.random.PRNGKey(100 + k), len(leaves))
            v = jax.tree.unflatten(treedef, [jax.random.normal(kk, a.shape, a.dtype)
                                             for kk, a in zip(keys, leaves, strict=True)])
            shifted = [jax.tree.map(lambda a, d, s=s: a + s * EPS * d, point, v) for s in (1, -1)]
            fd = (loss(*shifted[0]) - loss(*shifted[1])) / (2 * EPS)
            exact = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                                        jax.tree.leaves(v), strict=True))
            np.testing.assert_allclose(float(exact), float(fd), rtol=1e-7)


def test_graph_compiled_cell():
    with jax.enable_x64(True):
        compiled = G.compile(GRAPHS["mut2"], H)
        params, xs, carry = _setup(compiled, key=11, D_in=H)
        _same_as_scan(compiled, params, xs, carry, lengths=LENGTHS, method="deer")


@pytest.mark.slow
def test_universal_cell_values_and_gradients():
    """The search's interpreted cell: its step has a `custom_vjp` inside, so
    the Jacobians must come from reverse mode."""
    with jax.enable_x64(True):
        xs = jax.random.normal(jax.random.PRNGKey(12), (T, B, H), jnp.float64)
        cell = universal.cell(H, GRAPHS["lstm"])
        uparams = universal.params_from(GRAPHS["lstm"], {
            k: jnp.asarray(v, jnp.float64)
            for k, v in G.compile(GRAPHS["lstm"], H).init(jax.random.PRNGKey(2), H).items()})
        carry = cell.initial_carry((B,), jnp.float64)
        _same_as_scan(cell, uparams, xs, carry, reverse=True, method="quasi-deer")
        weights = {k: v for k, v in uparams.items() if k != "program"}  # the trained leaves

        def run(scan_fn):
            return lambda c, w, x, h: scan_fn(c, {**uparams, **w}, x, h)

        _assert_trees_close(_grads(run(parallel.scan), cell, weights, xs, carry),
                            _grads(run(recurrax.scan), cell, weights, xs, carry), **TOL)


def _user_cell(width=H):
    """A cell written by a user: a tuple carry of two widths, plain `h @ W`."""
    def init(key, d):
        k1, k2 = jax.random.split(key)
        return {"U": jax.random.normal(k1, (d, width)) / 2,
                "W": jax.random.normal(k2, (width + 2, width)) / 3}

    def initial_carry(batch_shape, dtype=jnp.float32):
        return (jnp.zeros((*batch_shape, 2), dtype), jnp.zeros((*batch_shape, width), dtype))

    def step(params, carry, px):
        a, h = carry
        h = jnp.tanh(px + jnp.concatenate([a, h], -1) @ params["W"])
        return (0.5 * a + 0.1 * h[..., :2], h), h

    return recurrax.Cell(init, initial_carry, lambda p, x: x @ p["U"], step, width)


def test_user_cell_with_a_tuple_carry_and_batch_axes_time_minor():
    with jax.enable_x64(True):
        cell = _user_cell()
        params = jax.tree.map(lambda a: a.astype(jnp.float64),
                              cell.init(jax.random.PRNGKey(0), D))
        xs = jax.random.normal(jax.random.PRNGKey(1), (2, 3, T, D), jnp.float64)
        lengths = np.array([[12, 5, 1], [0, 12, 9]])
        carry = cell.initial_carry((2, 3), jnp.float64)
        kw = dict(lengths=lengths, time_major=False)
        _same_as_scan(cell, params, xs, carry, method="quasi-elk", **kw)
        _assert_trees_close(_grads(parallel.scan, cell, params, xs, carry, **kw),
                            _grads(recurrax.scan, cell, params, xs, carry, **kw), **TOL)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n == "mingru" else pytest.mark.slow)
    for n in recurrax.cells.LINEAR_NAMES])
def test_linear_cells_solved_exactly_by_one_scan(name):
    with jax.enable_x64(True):
        cell = recurrax.cells.get(name, H)
        params, xs, carry = _setup(cell, key=13, D_in=H if name == "lru" else D)
        carry = jax.tree.map(lambda c: -c, carry)  # any sign: not only the log-space's h > 0
        reverse = name != "minlstm"  # both directions among the three
        kw = dict(lengths=LENGTHS, reverse=reverse)
        info = _same_as_scan(cell, params, xs, carry, lengths=LENGTHS, reverse=reverse)
        assert info.method == "linear" and int(info.iterations) == 0
        assert bool(info.converged) and bool(info.parallel)
        _assert_trees_close(_grads(parallel.scan, cell, params, xs, carry, **kw),
                            _grads(recurrax.scan, cell, params, xs, carry, **kw), **TOL)


def _expanding_rnn(gain=4.0, key=0):
    """A vanilla RNN whose recurrence expands (chaotic): W_hh ~ N(0, gain²/H)."""
    cell = recurrax.cells.rnn(H)
    params, xs, carry = _setup(cell, key=key)
    W = gain * jax.random.normal(jax.random.PRNGKey(key + 20), (H, H), jnp.float64) / np.sqrt(H)
    return cell, {**params, "W_hh": W}, xs, carry


def _contracting_rnn(key=0):
    cell = recurrax.cells.rnn(H)
    params, xs, carry = _setup(cell, key=key)
    return cell, {**params, "W_hh": 0.3 * params["W_hh"]}, xs, carry


def test_unconverged_falls_back_to_sequential_values_and_gradients():
    with jax.enable_x64(True):
        cell, params, xs, carry = _expanding_rnn()
        info = _same_as_scan(cell, params, xs, carry, lengths=LENGTHS, method="quasi-deer",
                             max_iters=2)
        assert not bool(info.converged) and not bool(info.parallel)
        assert int(info.iterations) == 2 and float(info.residual) > 1e-3
        run = functools.partial(parallel.scan, method="quasi-deer", max_iters=2)
        _assert_trees_close(_grads(run, cell, params, xs, carry),
                            _grads(recurrax.scan, cell, params, xs, carry), **TOL)


def test_unconverged_is_an_error_eagerly_and_nan_with_a_check_under_jit():
    with jax.enable_x64(True):
        cell, params, xs, carry = _expanding_rnn()
        with pytest.raises(parallel.ParallelError, match="did not converge in 2 iterations"):
            parallel.solve(cell, params, xs, carry, max_iters=2, on_failure="error")

        def run(params):
            return parallel.solve(cell, params, xs, carry, max_iters=2, on_failure="error")

        err, (c, ys, info) = checkify.checkify(jax.jit(run), errors=checkify.user_checks)(params)
        message = err.get()
        assert message is not None and "did not converge" in message
        assert np.isnan(np.asarray(ys)).all() and np.isnan(np.asarray(c)).all()
        assert not bool(info.converged)
        # Converged: no error, the scan's answer.
        err, (c, ys, info) = checkify.checkify(
            jax.jit(lambda p: parallel.solve(cell, p, xs, carry, max_iters=T,
                                             on_failure="error", method="deer")),
            errors=checkify.user_checks)(params)
        assert err.get() is None and bool(info.converged)
        _assert_trees_close((c, ys), recurrax.scan(cell, params, xs, carry), **TOL)


@pytest.mark.slow
def test_damping_keeps_the_iterates_finite_where_undamped_ones_overflow():
    """An expanding recurrence over 400 steps in float32: the undamped iterates
    overflow at once (NaN residual, stopped after one iteration); the damped
    ones stay finite (Levenberg–Marquardt refuses steps that raise the
    merit). Neither converges here, and both return the scan's answer."""
    cell = recurrax.cells.rnn(H)
    params = cell.init(jax.random.PRNGKey(4), D)
    params["W_hh"] = 4.0 * jax.random.normal(jax.random.PRNGKey(24), (H, H)) / np.sqrt(H)
    xs = jax.random.normal(jax.random.PRNGKey(5), (400, B, D))
    want = recurrax.scan(cell, params, xs)
    for method, finite in (("quasi-deer", False), ("quasi-elk", True)):
        c, ys, info = jax.jit(lambda p, m=method: parallel.solve(cell, p, xs, method=m,
                                                                 max_iters=5))(params)
        assert bool(np.isfinite(info.residual)) == finite and not bool(info.converged)
        assert int(info.iterations) == (5 if finite else 1)
        _assert_trees_close((c, ys), want, rtol=1e-6, atol=1e-6)


def test_auto_rule_both_sides():
    """`method="auto"`: the largest Lyapunov exponent decides."""
    from recurrax.metrics.lyapunov import largest_lyapunov_exponent

    with jax.enable_x64(True):
        for make, parallel_expected in ((_contracting_rnn, True), (_expanding_rnn, False)):
            cell, params, xs, carry = make()
            exponent = np.max(largest_lyapunov_exponent(cell, params, xs, carry))
            assert (exponent < 0) == parallel_expected
            info = _same_as_scan(cell, params, xs, carry, method="auto")
            assert bool(info.parallel) == parallel_expected and info.method == "auto"
            assert bool(info.converged) == parallel_expected


@pytest.mark.slow
def test_memory_does_not_grow_with_the_iterations():
    with jax.enable_x64(True):
        cell = recurrax.cells.gru(H)
        params, xs, carry = _setup(cell)

        def temp_bytes(max_iters):
            run = functools.partial(parallel.scan, max_iters=max_iters)
            f = jax.jit(jax.grad(functools.partial(_loss, run, cell)))
            stats = f.lower(params, xs, carry).compile().memory_analysis()
            return None if stats is None else stats.temp_size_in_bytes

        few, many = temp_bytes(2), temp_bytes(50)
        if few is None:
            pytest.skip("this backend reports no memory analysis")
        assert few == many


def test_vmap_over_sequences():
    with jax.enable_x64(True):
        cell = recurrax.cells.gru(H)
        params, xs, carry = _setup(cell)
        many = jnp.stack([xs, 2 * xs])
        got = jax.vmap(lambda x: parallel.scan(cell, params, x, carry))(many)
        want = jax.vmap(lambda x: recurrax.scan(cell, params, x, carry))(many)
        _assert_trees_close(got, want, **TOL)


# The solver's parts against NumPy loops written from their equations.

def test_linear_scans_both_directions(rng):
    a, b = rng.normal(size=(9, 2, 3)), rng.normal(size=(9, 2, 3))
    A, h0 = rng.normal(size=(9, 2, 3, 3)) / 2, rng.normal(size=(2, 3))
    with jax.enable_x64(True):
        for reverse in (False, True):
            order = range(8, -1, -1) if reverse else range(9)
            h, hd, want, want_d = h0, h0, {}, {}
            for t in order:
                h = a[t] * h + b[t]
                hd = np.einsum("rij,rj->ri", A[t], hd) + b[t]
                want[t], want_d[t] = h, hd
            got = _linear_scan.diagonal(jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0),
                                        reverse=reverse)
            np.testing.assert_allclose(got, np.stack([want[t] for t in range(9)]), rtol=1e-12)
            got = _linear_scan.dense(jnp.asarray(A), jnp.asarray(b), jnp.asarray(h0),
                                     reverse=reverse)
            np.testing.assert_allclose(got, np.stack([want_d[t] for t in range(9)]), rtol=1e-12)


@pytest.mark.parametrize("diagonal", [False, True], ids=["elk", "quasi-elk"])
def test_damped_step_minimises_the_trust_region_objective(rng, diagonal):
    """The Kalman smoother's mean is the least-squares minimiser of
    Σ‖s_t − A_t s_{t−1} − u_t‖² + λ Σ‖s_t − y_t‖², solved densely in NumPy."""
    n_steps, N, lam = 5, 3, 0.7
    A = rng.normal(size=(n_steps, 1, N)) if diagonal else rng.normal(size=(n_steps, 1, N, N))
    u, y, s0 = (rng.normal(size=(n_steps, 1, N)), rng.normal(size=(n_steps, 1, N)),
                rng.normal(size=(1, N)))
    dense = np.einsum("tri,ij->trij", A, np.eye(N)) if diagonal else A
    rows, rhs = [], []
    for t in range(n_steps):
        fit = np.zeros((N, n_steps * N))
        fit[:, t * N:(t + 1) * N] = np.eye(N)
        target = u[t, 0] + (dense[0, 0] @ s0[0] if t == 0 else 0)
        if t:
            fit[:, (t - 1) * N:t * N] = -dense[t, 0]
        near = np.zeros((N, n_steps * N))
        near[:, t * N:(t + 1) * N] = np.sqrt(lam) * np.eye(N)
        rows += [fit, near]
        rhs += [target, np.sqrt(lam) * y[t, 0]]
    want = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    with jax.enable_x64(True):
        got = kalman.damped_step(jnp.asarray(A), jnp.asarray(u), jnp.asarray(y),
                                 jnp.asarray(s0), lam, diagonal)
    np.testing.assert_allclose(np.asarray(got)[:, 0], want.reshape(n_steps, N), rtol=1e-10,
                               atol=1e-12)


def test_gauss_jordan_solves_with_pivoting(rng):
    a, b = rng.normal(size=(4, 5, 5)), rng.normal(size=(4, 5, 2))
    a[0, 0, 0] = 0.0  # needs a row swap
    with jax.enable_x64(True):
        got = kalman.gauss_jordan(jnp.asarray(a), jnp.asarray(b))
    np.testing.assert_allclose(got, np.linalg.solve(a, b), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad,error,match", [
    (dict(method="newton"), ValueError, "method must be one of 'deer', 'quasi-deer'"),
    (dict(method=3), ValueError, "method must be one of .*, got 3"),
    (dict(on_failure="ignore"), ValueError, "on_failure must be one of 'sequential', 'error'"),
    (dict(tol=0.0), ValueError, "tol must be > 0, got 0.0"),
    (dict(tol=float("nan")), ValueError, "tol must be finite"),
    (dict(tol="1e-5"), TypeError, "tol must be a number, got str"),
    (dict(max_iters=-1), ValueError, "max_iters"),
    (dict(max_iters=2.0), TypeError, "max_iters"),
    (dict(damping=0.5), ValueError, "damping: applies to method 'elk' or 'quasi-elk'"),
    (dict(method="elk", damping=-1.0), ValueError, "damping"),
    (dict(reverse="yes"), TypeError, "reverse"),
    (dict(lengths=np.array([13, 1, 1])), ValueError, "lengths"),
])
def test_bad_arguments_are_refused_before_tracing(bad, error, match):
    cell = recurrax.cells.gru(H)
    params = cell.init(jax.random.PRNGKey(0), D)
    xs = jnp.zeros((T, B, D))
    with pytest.raises(error, match=match):
        parallel.solve(cell, params, xs, **bad)


def test_wrong_input_size_named_like_scan():
    cell = recurrax.cells.gru(H)
    params = cell.init(jax.random.PRNGKey(0), D)
    with pytest.raises(ValueError, match="xs"):
        parallel.scan(cell, params, jnp.zeros((T, B, D + 1)))
