"""recurrax.nn.attention against NumPy written from the papers' equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recurrax.nn import attention

N, B, Q, K, A = 6, 3, 4, 5, 7
LENGTHS = np.array([6, 2, 0])


def np_softmax_valid(e, length):
    """softmax over the first `length` entries of e; zeros elsewhere."""
    out = np.zeros_like(e)
    if length:
        z = np.exp(e[:length] - e[:length].max())
        out[:length] = z / z.sum()
    return out


def np_params(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


@pytest.fixture
def memory():
    return np.random.default_rng(0).normal(size=(N, B, K)).astype(np.float32)


def test_feed_forward_matches_raffel_ellis_equations(memory):
    att = attention.feed_forward(A)
    params = att.init(jax.random.PRNGKey(1), K)
    assert {k: v.shape for k, v in params.items()} == {"W_a": (K, A), "b_a": (A,), "v_a": (A,)}
    params = {**params, "b_a": jnp.linspace(-0.5, 0.5, A)}
    context, alpha = jax.jit(att.apply)(params, memory, lengths=LENGTHS)
    p, m = np_params(params), memory.astype(np.float64)
    for b in range(B):
        e = np.array([p["v_a"] @ np.tanh(m[i, b] @ p["W_a"] + p["b_a"]) for i in range(N)])
        a = np_softmax_valid(e, LENGTHS[b])
        np.testing.assert_allclose(alpha[:, b], a, atol=1e-6)
        np.testing.assert_allclose(context[b], a @ m[:, b], atol=1e-5)
    assert np.all(np.asarray(alpha)[2:, 1] == 0.0)  # padding gets exactly zero weight
    np.testing.assert_array_equal(context[2], 0.0)   # an empty row has a zero context


def test_padding_values_do_not_change_the_result(memory):
    att = attention.feed_forward()
    params = att.init(jax.random.PRNGKey(2), K)
    changed = memory.copy()
    changed[2:, 1] = 1e4  # garbage in row 1's padding
    c1, a1 = att.apply(params, memory, lengths=LENGTHS)
    c2, a2 = att.apply(params, changed, lengths=LENGTHS)
    np.testing.assert_allclose(c1, c2, atol=1e-6)
    np.testing.assert_allclose(a1, a2, atol=1e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("kind", ["feed_forward", "additive", "soft_visual"])
def test_non_finite_padding_reaches_neither_context_nor_gradients(memory, kind, bad):
    """NaN or inf beyond `lengths` gives the context, weights and gradients of
    zero padding (the weights there are 0, and 0·NaN would be NaN)."""
    if kind == "feed_forward":
        att = attention.feed_forward(A)
        params = att.init(jax.random.PRNGKey(3), K)
        run = lambda p, m: att.apply(p, m, lengths=LENGTHS)
    else:
        att = attention.additive(A) if kind == "additive" else attention.soft_visual(A)
        params = att.init(jax.random.PRNGKey(3), Q, K)
        query = np.random.default_rng(1).normal(size=(B, Q)).astype(np.float32)
        run = lambda p, m: att.apply(p, query, m, lengths=LENGTHS)
    zeroed, poisoned = memory.copy(), memory.copy()
    for b, n in enumerate(LENGTHS):
        zeroed[n:, b], poisoned[n:, b] = 0.0, bad

    def loss(p, m):
        context, alpha = run(p, m)
        return jnp.sum(context ** 2) + jnp.sum(alpha ** 2)

    for got, want in [(run(params, poisoned), run(params, zeroed)),
                      (jax.grad(loss)(params, poisoned), jax.grad(loss)(params, zeroed))]:
        jax.tree.map(lambda g, w: np.testing.assert_array_equal(np.asarray(g), np.asarray(w)),
                     got, want)


@pytest.mark.parametrize("gate", [False, True])
def test_additive_and_soft_visual_match_the_equations(memory, gate):
    att = attention.soft_visual(A, gate=True) if gate else attention.additive(A)
    params = att.init(jax.random.PRNGKey(3), Q, K)
    query = np.random.default_rng(4).normal(size=(B, Q)).astype(np.float32)
    keys = att.prepare(params, memory)
    context, alpha = att.apply(params, query, memory, lengths=LENGTHS, keys=keys)
    context2, _ = att.apply(params, query, memory, lengths=LENGTHS)  # keys computed inside
    np.testing.assert_allclose(context, context2, atol=1e-6)
    p, m, q = np_params(params), memory.astype(np.float64), query.astype(np.float64)
    for b in range(B):
        e = np.array([p["v_a"] @ np.tanh(q[b] @ p["W_q"] + m[i, b] @ p["W_m"] + p["b_a"])
                      for i in range(N)])
        a = np_softmax_valid(e, LENGTHS[b])
        c = a @ m[:, b]
        if gate:
            c = c / (1.0 + np.exp(-(q[b] @ p["W_beta"] + p["b_beta"])))
        np.testing.assert_allclose(alpha[:, b], a, atol=1e-6)
        np.testing.assert_allclose(context[b], c, atol=1e-5)


def test_gradients_are_finite_with_empty_rows_and_match_finite_differences(memory):
    att = attention.additive(A)
    params = att.init(jax.random.PRNGKey(5), Q, K)
    query = jnp.asarray(np.random.default_rng(6).normal(size=(B, Q)), jnp.float32)

    def loss(q):
        context, _ = att.apply(params, q, memory, lengths=LENGTHS)
        return jnp.sum(jnp.sin(context))

    g = jax.grad(loss)(query)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[2], 0.0)
    q64, eps = np.asarray(query, np.float64), 1e-2
    for b, j in [(0, 1), (1, 3)]:
        up, down = q64.copy(), q64.copy()
        up[b, j] += eps
        down[b, j] -= eps
        fd = (loss(jnp.asarray(up, jnp.float32)) - loss(jnp.asarray(down, jnp.float32))) / (2 * eps)
        np.testing.assert_allclose(g[b, j], fd, rtol=2e-2, atol=2e-3)


def test_doubly_stochastic_penalty_and_grid_layout():
    rng = np.random.default_rng(7)
    C, L = 4, 6
    alphas = rng.dirichlet(np.ones(L), size=(C, B)).transpose(0, 2, 1)  # [C, L, B]
    steps = np.array([4, 2, 0])
    got = attention.doubly_stochastic_penalty(jnp.asarray(alphas), jnp.asarray(steps), weight=0.5)
    for b in range(B):
        total = alphas[: steps[b], :, b].sum(axis=0)
        np.testing.assert_allclose(got[b], 0.5 * np.sum((1 - total) ** 2), rtol=1e-6)
    grid = rng.normal(size=(B, 2, 3, K)).astype(np.float32)
    mem = attention.grid_to_memory(jnp.asarray(grid))
    assert mem.shape == (6, B, K)
    np.testing.assert_array_equal(mem[1 * 3 + 2], grid[:, 1, 2])  # i = row·w + col


def test_vmap_over_a_population_of_params(memory):
    att = attention.feed_forward(A)
    params = jax.vmap(lambda k: att.init(k, K))(jax.random.split(jax.random.PRNGKey(8), 4))
    ctx, alpha = jax.vmap(lambda p: att.apply(p, memory, lengths=LENGTHS))(params)
    assert ctx.shape == (4, B, K) and alpha.shape == (4, N, B)
    one = att.apply(jax.tree.map(lambda a: a[2], params), memory, lengths=LENGTHS)[0]
    np.testing.assert_allclose(ctx[2], one, atol=1e-6)


def test_bad_shapes_are_refused_with_the_expected_shape(memory):
    ff = attention.feed_forward()
    params = ff.init(jax.random.PRNGKey(0), K)
    with pytest.raises(ValueError, match=r"memory must be \[N, \*batch, 5\]"):
        ff.apply(params, memory[..., :3])
    with pytest.raises(ValueError, match="needs the batch shape"):
        ff.apply(params, memory, lengths=np.array([1, 2]))
    with pytest.raises(ValueError, match=r"must lie in \[0, T\] = \[0, 6\]"):
        ff.apply(params, memory, lengths=np.array([1, 7, 2]))
    with pytest.raises(ValueError, match="attention_size must be a positive int"):
        attention.feed_forward(0)
    add = attention.additive()
    p = add.init(jax.random.PRNGKey(0), Q, K)
    with pytest.raises(ValueError, match="query must be"):
        add.apply(p, jnp.zeros((B + 1, Q)), memory)
