"""NumPy references written straight from the equations in docs/cells.md.

Nothing here imports recurrax: these are the independent implementations the
library is checked against. Float64 throughout; one sequence at a time, one
step at a time, in plain Python loops.
"""

from __future__ import annotations

import numpy as np

# Parameter names per cell, as docs/cells.md lists them.
GATES = {"lstm": "ifgo", "lstm-i": "fgo", "lstm-f": "igo", "lstm-o": "ifg", "lstm-b": "ifgo"}
PARAM_NAMES = {
    "rnn": (["W_xh"], ["W_hh"], ["b_h"]),
    **{
        name: ([f"W_x{g}" for g in gates], [f"W_h{g}" for g in gates], [f"b_{g}" for g in gates])
        for name, gates in GATES.items()
    },
    "gru": (["W_xr", "W_xz", "W_xh"], ["W_hr", "W_hz", "W_hh"], ["b_r", "b_z", "b_h"]),
    "gru-reset-after": (
        ["W_xr", "W_xz", "W_xh"], ["W_hr", "W_hz", "W_hh"], ["b_r", "b_z", "b_h", "b_hh"]
    ),
    "mut1": (["W_xz", "W_xr"], ["W_hr", "W_hh"], ["b_z", "b_r", "b_h"]),
    "mut2": (["W_xz", "W_xh"], ["W_hz", "W_hr", "W_hh"], ["b_z", "b_r", "b_h"]),
    "mut3": (["W_xz", "W_xr", "W_xh"], ["W_hz", "W_hr", "W_hh"], ["b_z", "b_r", "b_h"]),
}
NEEDS_D_EQUALS_H = {"mut1", "mut2"}


def param_shapes(name: str, D: int, H: int) -> dict[str, tuple]:
    wx, wh, b = PARAM_NAMES[name]
    return {**{k: (D, H) for k in wx}, **{k: (H, H) for k in wh}, **{k: (H,) for k in b}}


def random_params(name: str, D: int, H: int, rng: np.random.Generator, scale=0.5):
    """Random params of the contract's names and shapes, biases included."""
    return {k: scale * rng.standard_normal(s) for k, s in param_shapes(name, D, H).items()}


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def rnn_step(p, h, x):
    h = np.tanh(x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"])
    return h, h


def lstm_step(p, carry, x):
    c, h = carry

    def gate(k):  # a gate without params is switched off: the constant 1
        if f"W_x{k}" not in p:
            return 1.0
        return sigmoid(x @ p[f"W_x{k}"] + h @ p[f"W_h{k}"] + p[f"b_{k}"])

    i, f, o = gate("i"), gate("f"), gate("o")
    g = np.tanh(x @ p["W_xg"] + h @ p["W_hg"] + p["b_g"])
    c = f * c + i * g
    h = o * np.tanh(c)
    return (c, h), h


def gru_step(p, h, x):
    r = sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    z = sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    if "b_hh" in p:  # reset after the recurrent matmul
        h_tilde = np.tanh(x @ p["W_xh"] + p["b_h"] + r * (h @ p["W_hh"] + p["b_hh"]))
    else:
        h_tilde = np.tanh(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"])
    h = z * h + (1 - z) * h_tilde
    return h, h


def mut1_step(p, h, x):
    z = sigmoid(x @ p["W_xz"] + p["b_z"])
    r = sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    h = np.tanh((r * h) @ p["W_hh"] + np.tanh(x) + p["b_h"]) * z + h * (1 - z)
    return h, h


def mut2_step(p, h, x):
    z = sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    r = sigmoid(x + h @ p["W_hr"] + p["b_r"])
    h = np.tanh((r * h) @ p["W_hh"] + x @ p["W_xh"] + p["b_h"]) * z + h * (1 - z)
    return h, h


def mut3_step(p, h, x):
    z = sigmoid(x @ p["W_xz"] + np.tanh(h) @ p["W_hz"] + p["b_z"])
    r = sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    h = np.tanh((r * h) @ p["W_hh"] + x @ p["W_xh"] + p["b_h"]) * z + h * (1 - z)
    return h, h


STEPS = {
    "rnn": rnn_step, **{n: lstm_step for n in GATES}, "gru": gru_step,
    "gru-reset-after": gru_step, "mut1": mut1_step, "mut2": mut2_step, "mut3": mut3_step,
}


def is_lstm(name: str) -> bool:
    return name in GATES


def zero_carry(name: str, H: int):
    z = np.zeros(H)
    return (z, z.copy()) if is_lstm(name) else z


def run(name, p, xs, lengths=None, reverse=False, carry0=None):
    """Time-major `xs[T, B, D]`. Each row b runs over its steps
    0..lengths[b]-1 (backward from lengths[b]-1 with `reverse`), outputs 0 at
    padded steps; returns (final carries per row, ys[T, B, H])."""
    T, B = xs.shape[:2]
    H = p[PARAM_NAMES[name][1][0]].shape[0]
    step = STEPS[name]
    ys = np.zeros((T, B, H))
    finals = []
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        carry = zero_carry(name, H) if carry0 is None else row(carry0, b)
        order = range(L - 1, -1, -1) if reverse else range(L)
        for t in order:
            carry, ys[t, b] = step(p, carry, xs[t, b])
        finals.append(carry)
    return stack_rows(finals), ys


def row(carry, b):
    if isinstance(carry, tuple):
        return tuple(np.asarray(c, np.float64)[b] for c in carry)
    return np.asarray(carry, np.float64)[b]


def stack_rows(rows):
    if isinstance(rows[0], tuple):
        return tuple(np.stack(parts) for parts in zip(*rows, strict=True))
    return np.stack(rows)
