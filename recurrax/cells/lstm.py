"""The LSTM and the Jozefowicz et al. (2015) ablations LSTM-i, -f, -o and -b."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax import _checks
from recurrax import initializers as inits
from recurrax.cells import _common as C
from recurrax.protocols import Cell


def lstm(
    hidden_size: int,
    forget_bias: float = 0.0,
    input_gate: bool = True,
    forget_gate: bool = True,
    output_gate: bool = True,
    *,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""The LSTM cell (no peepholes):

        i  = σ(x W_xi + h W_hi + b_i)         input gate
        f  = σ(x W_xf + h W_hf + b_f)         forget gate
        o  = σ(x W_xo + h W_ho + b_o)         output gate
        g  = tanh(x W_xg + h W_hg + b_g)      candidate
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c'),                    y = h'

    A gate switched off (`input_gate=False`, ...) is the constant 1 and has no
    params: these are the ablations LSTM-i, LSTM-f and LSTM-o of Jozefowicz et
    al. (2015). `b_f` starts at `forget_bias` (plus the bias initialiser); the paper's
    LSTM-b is `forget_bias=1`, the default 0 matches PyTorch and Flax.

    Params: `W_x{i,f,g,o}: (D, H)`, `W_h{i,f,g,o}: (H, H)`, `b_{i,f,g,o}: (H,)`
    for the gates present. Carry: `(c, h)`, each `(*batch, H)`.
    `prepare` is one matmul `x [W_xi|W_xf|W_xg|W_xo] + [b_i|b_f|b_g|b_o]`,
    `step` one matmul `h [W_hi|W_hf|W_hg|W_ho]`.
    """
    H = C.check_hidden_size("lstm", hidden_size)
    input_gate = C.check_flag("lstm", "input_gate", input_gate)
    forget_gate = C.check_flag("lstm", "forget_gate", forget_gate)
    output_gate = C.check_flag("lstm", "output_gate", output_gate)
    _checks.check_real("lstm: forget_bias", forget_bias)
    switches = {"i": input_gate, "f": forget_gate, "g": True, "o": output_gate}
    blocks = [gate for gate, on in switches.items() if on]
    if not forget_gate and forget_bias != 0.0:
        raise ValueError("lstm: forget_bias needs the forget gate (forget_gate=True)")
    Wx = [f"W_x{g}" for g in blocks]
    Wh = [f"W_h{g}" for g in blocks]
    b = [f"b_{g}" for g in blocks]

    init = C.param_initializer(
        "lstm", H,
        input_kernels=Wx, recurrent_kernels=Wh, biases=b,
        initializers=initializers,
        bias_offsets={"b_f": forget_bias} if forget_gate else None,
    )

    def initial_carry(batch_shape: tuple = (), dtype=jnp.float32):
        zeros = jnp.zeros((*tuple(batch_shape), H), dtype)
        return (zeros, zeros)

    def step(params: dict, carry, px: jax.Array):
        c, h = carry
        a = px + C.recurrent_matmul(params, h, Wh)
        pre = dict(zip(blocks, C.split(a, len(blocks)), strict=True))

        def gate(k: str):  # a gate switched off is the constant 1
            return jax.nn.sigmoid(pre[k]) if k in pre else 1.0

        c = gate("f") * c + gate("i") * jnp.tanh(pre["g"])
        h = gate("o") * jnp.tanh(c)
        return (c, h), h

    return Cell(init, initial_carry, C.linear_prepare("lstm", Wx, b), step, H)
