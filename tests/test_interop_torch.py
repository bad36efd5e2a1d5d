"""recurrax.interop's PyTorch converters: a converted nn.RNN / LSTM / GRU gives
PyTorch's outputs, final states and gradients (inputs, initial states,
weights) to float32 rounding, with and without lengths (packed sequences), in
both layouts; to_torch and from_torch invert each other exactly; what has no
exact counterpart is refused with a message naming it."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax.interop import (
    _kinds,
    carry_from_torch,
    carry_to_torch,
    from_torch,
    to_torch,
)
from recurrax.interop import _torch_layout as layout
from tests.helpers import Tolerance, run_docs_block

torch = pytest.importorskip("torch", reason="the PyTorch converters are checked against torch")

TOL = Tolerance(rtol=1e-5, atol=2e-6)
T, B, D, H = 5, 3, 4, 6
LENGTHS = [5, 2, 4]  # one full row, so pad_packed_sequence's total_length is T

# (module, num_layers, bidirectional, batch_first, bias, lengths): every kind,
# one and two layers, both directions, both layouts, bias=False, packed or not
CASES = [
    ("RNN", 1, False, False, True, False),
    ("LSTM", 2, True, True, True, True),
    ("GRU", 1, True, False, False, False),
    ("GRU", 2, False, True, True, True),
]


def make_module(name, num_layers, bidirectional, batch_first, bias):
    torch.manual_seed(0)
    module = getattr(torch.nn, name)(D, H, num_layers=num_layers, bias=bias,
                                     batch_first=batch_first, bidirectional=bidirectional)
    with torch.no_grad():  # weights larger than torch's init, so that the gates saturate
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.6)
    return module


def torch_run(module, xs, hx, lengths, batch_first):
    """PyTorch's outputs and final state, through a packed sequence when
    `lengths` is given (padded outputs are 0)."""
    if lengths is None:
        return module(xs, hx)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xs, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    out, final = module(packed, hx)
    ys, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return ys, final


def as_np(t):
    return t.detach().numpy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_outputs_states_and_gradients_match_torch(case):
    name, num_layers, bidirectional, batch_first, bias, with_lengths = case
    module = make_module(name, num_layers, bidirectional, batch_first, bias)
    seq, params = from_torch(module)
    spec = layout.Spec(name.lower(), D, H, num_layers, bidirectional, batch_first)
    rng = np.random.default_rng(1)
    rows = num_layers * (2 if bidirectional else 1)
    xs = torch.tensor(rng.standard_normal((B, T, D) if batch_first else (T, B, D)),
                      dtype=torch.float32, requires_grad=True)
    states = [torch.tensor(rng.standard_normal((rows, B, H)), dtype=torch.float32,
                           requires_grad=True) for _ in range(2 if name == "LSTM" else 1)]
    hx = tuple(states) if name == "LSTM" else states[0]
    lengths = LENGTHS if with_lengths else None
    ys, final = torch_run(module, xs, hx, lengths, batch_first)
    finals = list(final) if name == "LSTM" else [final]
    # random cotangents for the outputs and every final state
    w_ys = torch.tensor(rng.standard_normal(ys.shape), dtype=torch.float32)
    w_finals = [torch.tensor(rng.standard_normal(f.shape), dtype=torch.float32) for f in finals]
    loss = (ys * w_ys).sum() + sum((f * w).sum() for f, w in zip(finals, w_finals, strict=True))
    loss.backward()

    # the same cotangents in recurrax's layout (a carry of weights)
    w_carry = carry_from_torch(module, tuple(w_finals) if name == "LSTM" else w_finals[0])

    def our_loss(p, x, carry):
        carry, out = seq.apply(p, x, carry, lengths=None if lengths is None
                               else jnp.array(lengths))
        terms = jax.tree.map(lambda a, w: jnp.sum(a * w), carry, w_carry)
        return jnp.sum(out * as_np(w_ys)) + sum(jax.tree.leaves(terms)), (carry, out)

    carry0 = carry_from_torch(module, hx)
    value_and_grad = jax.jit(jax.value_and_grad(our_loss, argnums=(0, 1, 2), has_aux=True))
    (value, (carry, out)), grads = value_and_grad(params, jnp.asarray(as_np(xs)), carry0)
    d_params, d_xs, d_carry = grads

    np.testing.assert_allclose(out, as_np(ys), **TOL)  # padded steps: 0 in both
    ours = carry_to_torch(module, carry)
    for a, b in zip(ours if name == "LSTM" else [ours], finals, strict=True):
        np.testing.assert_allclose(as_np(a), as_np(b), **TOL)
    np.testing.assert_allclose(value, loss.item(), rtol=1e-5)
    np.testing.assert_allclose(d_xs, as_np(xs.grad), **TOL)
    want_d_carry = carry_from_torch(module, tuple(s.grad for s in states) if name == "LSTM"
                                    else states[0].grad)  # a re-indexing: its own pullback
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), d_carry, want_d_carry)
    # d loss / d torch weights = the pullback of the conversion applied to ours
    torch_arrays = {k: jnp.asarray(as_np(v)) for k, v in module.named_parameters()}

    @jax.jit
    def pullback(arrays, cotangent):
        return jax.vjp(lambda a: layout.params_from_arrays(spec, a), arrays)[1](cotangent)[0]

    mapped = pullback(torch_arrays, d_params)
    for k, v in module.named_parameters():
        np.testing.assert_allclose(mapped[k], as_np(v.grad), **TOL, err_msg=k)

    # and back: the module to_torch builds gives the same params exactly
    rebuilt = to_torch(seq, params, batch_first=batch_first)
    assert rebuilt.batch_first == batch_first and rebuilt.bias
    again = from_torch(rebuilt)[1]
    assert jax.tree.structure(again) == jax.tree.structure(params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), again, params)


@pytest.mark.slow  # four scans compiled one by one: ~2 s
def test_docs_example_runs_and_matches_torch():
    namespace = run_docs_block("interop.md", "PyTorch to recurrax and back:")
    lstm, xs, lengths = namespace["lstm"], namespace["xs"], list(namespace["lengths"])
    _, T_doc, _ = xs.shape
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(xs), torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = lstm(packed)
    ys, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T_doc)
    np.testing.assert_allclose(namespace["ys"], as_np(ys), **TOL)
    np.testing.assert_allclose(as_np(namespace["h_n"]), as_np(h_n), **TOL)
    np.testing.assert_allclose(as_np(namespace["c_n"]), as_np(c_n), **TOL)
    module = namespace["module"]
    assert isinstance(module, torch.nn.LSTM) and module.batch_first


def test_params_and_seq_shapes():
    seq, params = from_torch(make_module("GRU", 2, True, False, True))
    assert isinstance(params, tuple) and len(params) == 2
    assert set(params[1]) == {"fwd", "bwd"}
    assert params[1]["bwd"]["W_xr"].shape == (2 * H, H)  # layer 1 reads both directions
    assert params[0]["fwd"]["b_hh"].dtype == jnp.float32
    assert isinstance(seq, recurrax.Seq)


def random_params(kind, input_size, rng):
    names = _kinds.keys(kind)
    return {k: jnp.asarray(rng.standard_normal((input_size if k.startswith("W_x") else H, H)
                                               if k.startswith("W") else (H,)), jnp.float32)
            for k in names}


def test_round_trip_from_recurrax_params():
    """A model built in recurrax goes to torch and comes back unchanged."""
    rng = np.random.default_rng(0)
    cell = recurrax.cells.lstm(H, forget_bias=1.0)
    seq = recurrax.stack([recurrax.bidirectional(cell, time_major=False)] * 2, time_major=False)
    params = tuple({"fwd": random_params("lstm", width, rng),
                    "bwd": random_params("lstm", width, rng)} for width in (D, 2 * H))
    module = to_torch(seq, params, batch_first=True)
    assert isinstance(module, torch.nn.LSTM)
    assert module.num_layers == 2 and module.bidirectional and module.batch_first
    np.testing.assert_array_equal(as_np(module.bias_hh_l1_reverse), 0.0)
    back = from_torch(module)[1]
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), back, params)


def test_single_cell_and_gru_bias_layout():
    """A Cell is one layer; the GRU's b_hh goes to bias_hh's candidate block
    and only there."""
    cell = recurrax.cells.gru(H, reset_after=True)
    params = random_params("gru", D, np.random.default_rng(1))
    module = to_torch(cell, params)
    assert isinstance(module, torch.nn.GRU) and module.num_layers == 1
    b_ih, b_hh = as_np(module.bias_ih_l0), as_np(module.bias_hh_l0)
    np.testing.assert_array_equal(b_ih, np.concatenate([params["b_r"], params["b_z"],
                                                        params["b_h"]]))
    np.testing.assert_array_equal(b_hh[: 2 * H], 0.0)
    np.testing.assert_array_equal(b_hh[2 * H:], params["b_hh"])
    np.testing.assert_array_equal(as_np(module.weight_ih_l0)[:H], np.asarray(params["W_xr"]).T)


def test_to_torch_leaves_torch_rng_alone():
    cell = recurrax.cells.rnn(H)
    params = random_params("rnn", D, np.random.default_rng(0))
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    to_torch(cell, params)
    assert torch.rand(1) == expected


# ------------------------------------------------------------------ refusals

class Overriding(torch.nn.LSTM):
    def forward(self, input, hx=None):
        return super().forward(input * 2, hx)


@pytest.mark.parametrize("module, error, words", [
    (lambda: torch.nn.Linear(D, H), TypeError, "expected a torch.nn.RNN, nn.LSTM or nn.GRU"),
    (lambda: torch.nn.Transformer(8, 2, 1, 1, dim_feedforward=8, batch_first=True), TypeError,
     "torch.nn.modules.transformer.Transformer"),
    (lambda: torch.nn.LSTMCell(D, H), TypeError, "nn.*Cell modules are not converted"),
    (lambda: torch.nn.LSTM(D, H, proj_size=2), ValueError, "proj_size=2"),
    (lambda: torch.nn.RNN(D, H, nonlinearity="relu"), ValueError, "nonlinearity='relu'"),
    (lambda: torch.nn.GRU(D, H, num_layers=2, dropout=0.25), ValueError, "dropout=0.25"),
    (lambda: Overriding(D, H), TypeError, "overrides LSTM.forward"),
], ids=["linear", "transformer", "cell", "proj_size", "relu", "dropout", "subclass"])
def test_from_torch_refuses(module, error, words):
    with pytest.raises(error, match=re.escape(words)):
        from_torch(module())


def test_from_torch_accepts_dropout_of_one_layer_and_no_bias():
    with pytest.warns(UserWarning):  # torch warns: dropout needs num_layers > 1
        module = torch.nn.GRU(D, H, dropout=0.5)
    from_torch(module)
    _, params = from_torch(torch.nn.RNN(D, H, bias=False))
    np.testing.assert_array_equal(params["b_h"], 0.0)


def _params(name):  # the names and shapes are all the conversion looks at first
    return jax.eval_shape(lambda k: recurrax.cells.get(name, H).init(k, H), jax.random.key(0))


@pytest.mark.parametrize("name, words", [
    ("gru", r"gru \(reset_after=False\)"),
    ("lstm-i", "lstm-i"),
    ("mut1", "mut1"),
    ("mingru", "mingru"),
])
def test_to_torch_refuses_cells_torch_lacks(name, words):
    cell = recurrax.cells.get(name, H)
    with pytest.raises(ValueError, match=f"{words}.*which PyTorch has no cell for"):
        to_torch(cell, _params(name))


def test_to_torch_refuses_models_torch_lacks():
    cell = recurrax.cells.lstm(H)
    rng = np.random.default_rng(0)
    p, q = random_params("lstm", D, rng), random_params("lstm", H, rng)
    cases = [
        (recurrax.stack([cell, cell], residual=True), (p, q), "residual stack"),
        (recurrax.stack([cell, cell], dropout=0.3), (p, q), "dropout"),
        (recurrax.bidirectional(cell, merge="sum"), {"fwd": p, "bwd": p}, "merge='sum'"),
        (recurrax.layer(cell, time_major=False), p, "pass batch_first=True"),
        (recurrax.layer(cell, reverse=True), p, "does not compute what its params describe"),
        (recurrax.cells.lstm(H + 1), p, "hidden_size 7"),
        (recurrax.cells.rnn(H), p, "the cell fails on the params"),
        (recurrax.stack([cell, recurrax.cells.gru(H, reset_after=True)]),
         (p, random_params("gru", H, rng)), "mix cells"),
        (recurrax.stack([recurrax.bidirectional(cell), cell]), ({"fwd": p, "bwd": p}, q),
         "only some layers"),
        (recurrax.bidirectional(recurrax.stack([cell, cell])), {"fwd": (p, q), "bwd": (p, q)},
         "bidirectional of stacks"),
    ]
    for model, params, words in cases:
        with pytest.raises(ValueError, match=words):
            to_torch(model, params)
    # the same function built with other options converts (checked by its numbers)
    assert isinstance(to_torch(recurrax.layer(cell, unroll=2, remat=True), p), torch.nn.LSTM)
    other = recurrax.cells.gru(H)  # reset before: same names but b_hh, other equations
    params = random_params("gru", D, rng)
    with pytest.raises(ValueError, match="does not compute the gru equations"):
        to_torch(other, params)
    with pytest.raises(TypeError, match="batch_first"):
        to_torch(cell, p, batch_first="yes")  # type: ignore[arg-type]


def test_carry_conversion_checks_shapes():
    module = torch.nn.LSTM(D, H, num_layers=2)
    with pytest.raises(TypeError, match=r"pair \(h_0, c_0\)"):
        carry_from_torch(module, torch.zeros(2, B, H))
    with pytest.raises(ValueError, match="h_0 must have shape"):
        carry_from_torch(module, (torch.zeros(1, B, H), torch.zeros(1, B, H)))
    with pytest.raises(ValueError, match="not one of from_torch"):
        carry_to_torch(module, (jnp.zeros((B, H)), jnp.zeros((B, H))))
    assert carry_from_torch(module, None) is None
