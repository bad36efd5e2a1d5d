"""recurrax cells as Flax NNX modules (`flax.nnx.Module`).

    from flax import nnx
    import recurrax, recurrax.nnx

    rnn = recurrax.nnx.RNN(recurrax.cells.lstm(64), 32, rngs=nnx.Rngs(0))
    ys = rnn(xs)                                   # xs: [batch, T, 32] -> ys: [batch, T, 64]
    bi = recurrax.nnx.Bidirectional(rnn, recurrax.nnx.RNN(recurrax.cells.gru(64), 32,
                                                          rngs=nnx.Rngs(1)))
    deep = recurrax.nnx.Stack([bi, recurrax.nnx.RNN(recurrax.cells.rnn(64), 128,
                                                    rngs=nnx.Rngs(2))])

`RNN` holds a cell's params as `nnx.Param`s named as the cell names them
(`W_xi`, `b_i`, …) and runs `recurrax.scan`; `Bidirectional` and `Stack` are
`recurrax.bidirectional` and `recurrax.stack`. All follow `flax.nnx.RNN`'s
conventions (batch-major by default, `ys` returned unless `return_carry`) and
work under `nnx.jit`, `nnx.grad`, `nnx.vmap` and `nnx.Optimizer`. Each has
`recurrax_params()`, its params as recurrax's functions take them. See
docs/nnx.md.
"""

from recurrax.nnx.combinators import Bidirectional, Stack
from recurrax.nnx.rnn import RNN, Constant

__all__ = ["RNN", "Bidirectional", "Constant", "Stack"]
