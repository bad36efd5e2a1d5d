"""Property-based checks (hypothesis) over shapes, lengths and directions."""

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import recurrax
from tests import reference as ref
from tests.helpers import ALL, build, input_size


@st.composite
def problems(draw):
    name = draw(st.sampled_from(ALL))
    H = draw(st.integers(1, 5))
    D = input_size(name, H, draw(st.integers(1, 4)))
    T = draw(st.integers(1, 6))
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    use_lengths = draw(st.booleans())
    lengths = (np.array(draw(st.lists(st.integers(0, T), min_size=int(np.prod(batch)),
                                      max_size=int(np.prod(batch))))).reshape(batch)
               if use_lengths else None)
    return dict(name=name, H=H, D=D, T=T, batch=batch, lengths=lengths,
                reverse=draw(st.booleans()), time_major=draw(st.booleans()),
                hoist=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=20, deadline=None)
@given(problems())
def test_scan_matches_the_reference_on_any_shape(case):
    rng = np.random.default_rng(case["seed"])
    name, H, D, T, batch = case["name"], case["H"], case["D"], case["T"], case["batch"]
    p = ref.random_params(name, D, H, rng)
    xs = rng.standard_normal((T, *batch, D))
    lengths = case["lengths"]
    given_xs = xs if case["time_major"] else np.moveaxis(xs, 0, -2)
    carry, ys = recurrax.scan(
        build(name, H), {k: jnp.asarray(v, jnp.float32) for k, v in p.items()},
        jnp.asarray(given_xs, jnp.float32),
        lengths=None if lengths is None else jnp.asarray(lengths),
        reverse=case["reverse"], time_major=case["time_major"], hoist=case["hoist"])
    if not case["time_major"]:
        ys = np.moveaxis(np.asarray(ys), -2, 0)
    n = int(np.prod(batch))
    want_carry, want_ys = ref.run(name, p, xs.reshape(T, n, D),
                                  lengths=None if lengths is None else lengths.reshape(n),
                                  reverse=case["reverse"])
    assert np.shape(ys) == (T, *batch, H)
    np.testing.assert_allclose(np.asarray(ys).reshape(T, n, H), want_ys, rtol=3e-5, atol=3e-5)
    as_tuple = lambda c: c if isinstance(c, tuple) else (c,)
    for got, want in zip(as_tuple(carry), as_tuple(want_carry), strict=True):
        np.testing.assert_allclose(np.asarray(got).reshape(n, H), want, rtol=3e-5, atol=3e-5)
