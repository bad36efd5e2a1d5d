"""The README's code runs as written and does what it says: the quick start,
and the "Write your own cell" example checked against NumPy written from the
minimal gated unit's equations."""

import pathlib
import re

import numpy as np

from tests.reference import sigmoid

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def readme_block(section: str) -> str:
    """The first Python block under the README heading `section`."""
    text = README.read_text()
    match = re.search(rf"## {re.escape(section)}\n\n.*?```python\n(.*?)```", text, re.S)
    assert match, f"README has no Python block under '## {section}'"
    return match.group(1)


def run_block(section: str, replace: dict[str, str] | None = None) -> dict:
    """Execute the README's block under `section`, each key of `replace`
    replaced by its value first; the block's namespace."""
    block = readme_block(section)
    for old, new in (replace or {}).items():
        assert old in block, f"README's '{section}' block has no {old!r}"
        block = block.replace(old, new)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    return namespace


def test_quick_start_runs():
    assert len(readme_block("Quick start").strip().splitlines()) <= 16
    namespace = run_block("Quick start")
    ys, h, lengths = namespace["ys"], namespace["h"], np.asarray(namespace["lengths"])
    assert ys.shape == (100, 8, 64)
    for b, L in enumerate(lengths):  # h is each row's output at its last valid step
        np.testing.assert_allclose(np.asarray(h[b]), np.asarray(ys[L - 1, b]), rtol=1e-6)
        assert not np.any(np.asarray(ys[L:, b]))
    grads, params = namespace["grads"], namespace["params"]
    assert {k: v.shape for k, v in grads.items()} == {k: v.shape for k, v in params.items()}


def mgu_reference(p: dict, xs: np.ndarray, lengths: np.ndarray):
    """The minimal gated unit over `xs[T, B, D]`, each row stopped at its length:

        f  = σ(x W_xf + h W_hf + b_f)
        h' = (1 − f)⊙h + f⊙tanh(x W_xh + (f⊙h) W_hh + b_h)

    Returns the last valid `h` of every row and the outputs, 0 past each length."""
    T, B, _ = xs.shape
    h = np.zeros((B, p["W_hh"].shape[0]))
    ys = np.zeros((T, *h.shape))
    for t, x in enumerate(xs):
        f = sigmoid(x @ p["W_xf"] + h @ p["W_hf"] + p["b_f"])
        new = (1 - f) * h + f * np.tanh(x @ p["W_xh"] + (f * h) @ p["W_hh"] + p["b_h"])
        valid = (t < lengths)[:, None]
        h = np.where(valid, new, h)
        ys[t] = np.where(valid, new, 0.0)
    return h, ys


def test_write_your_own_cell():
    namespace = run_block("Write your own cell")
    recurrax, cell = namespace["recurrax"], namespace["cell"]
    params, xs, lengths = namespace["params"], namespace["xs"], namespace["lengths"]
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    xs64, lengths = np.asarray(xs, np.float64), np.asarray(lengths)
    assert set(p64) == {"W_xf", "W_xh", "W_hf", "W_hh", "b_f", "b_h"}

    h_ref, ys_ref = mgu_reference(p64, xs64, lengths)
    for hoist in (True, False):  # prepare on all steps at once, or one step at a time
        h, ys = recurrax.scan(cell, params, xs, lengths=lengths, hoist=hoist)
        np.testing.assert_allclose(np.asarray(h), h_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(ys), ys_ref, rtol=1e-5, atol=1e-6)
    carry, y = recurrax.step(cell, params, cell.initial_carry((xs.shape[1],)), xs[0])
    first = mgu_reference(p64, xs64[:1], np.ones_like(lengths))[1][0]
    np.testing.assert_allclose(np.asarray(y), first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(carry), first, rtol=1e-5, atol=1e-6)

    def loss(p):  # the README's loss, sum of squares of each row's last valid h
        return np.sum(mgu_reference(p, xs64, lengths)[0] ** 2)

    grads, eps = namespace["grads"], 1e-6
    for name, value in p64.items():
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            plus, minus = dict(p64), dict(p64)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name][i] += eps
            minus[name][i] -= eps
            numeric[i] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(grads[name]), numeric, rtol=1e-3, atol=1e-4,
                                   err_msg=name)


def test_write_your_own_cell_with_marked_matmuls():
    """The README's advice: the cell with its recurrent matmuls written with
    `recurrax.cells.recurrent_matmul` computes the same outputs and gradients
    (the weights' gradients now after the loop)."""
    plain = run_block("Write your own cell")
    marked = run_block("Write your own cell", {
        'h @ p["W_hf"]': 'recurrax.cells.recurrent_matmul(p, h, ["W_hf"])',
        '(f * h) @ p["W_hh"]': 'recurrax.cells.recurrent_matmul(p, f * h, ["W_hh"])',
    })
    for name, grad in plain["grads"].items():
        np.testing.assert_allclose(np.asarray(marked["grads"][name]), np.asarray(grad),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    loss = marked["loss"]
    np.testing.assert_allclose(float(loss(marked["params"])), float(plain["loss"](plain["params"])),
                               rtol=1e-6)
