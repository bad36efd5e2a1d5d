"""The built-in cells, and `get(name, hidden_size)` to build one by name: the
ten of Jozefowicz et al. (2015) (`NAMES`)

| name    | cell                                                  |
| ------- | ----------------------------------------------------- |
| rnn     | vanilla tanh RNN (the paper's "Tanh")                 |
| lstm    | LSTM, forget bias 0 (PyTorch, Flax)                   |
| lstm-i  | LSTM without input gate (i = 1)                       |
| lstm-f  | LSTM without forget gate (f = 1)                      |
| lstm-o  | LSTM without output gate (o = 1)                      |
| lstm-b  | LSTM with forget bias 1 (the paper's advice)          |
| gru     | GRU, reset gate before the recurrent matmul (Cho 2014)|
| mut1    | MUT1 of Jozefowicz et al. (2015)                      |
| mut2    | MUT2                                                  |
| mut3    | MUT3                                                  |

and the cells whose recurrence is linear in the carry (`LINEAR_NAMES`; each
sets `Cell.linear`, so `recurrax.parallel.scan` runs a whole sequence exactly
with one associative scan):

| name    | cell                                                  |
| ------- | ----------------------------------------------------- |
| mingru  | minGRU (Feng et al. 2024, "Were RNNs All We Needed?") |
| minlstm | minLSTM (Feng et al. 2024)                            |
| lru     | linear recurrent unit (Orvieto et al. 2023)           |

A cell of your own marks its recurrent matmuls with `recurrent_matmul(params,
h, names)` (`h · [W_1 | W_2 | …]`) to get `scan`'s faster derivative, the
recurrent weights' gradients after the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recurrax.cells._common import recurrent_matmul
from recurrax.cells.gru import gru
from recurrax.cells.lru import lru
from recurrax.cells.lstm import lstm
from recurrax.cells.minimal import mingru, minlstm
from recurrax.cells.mut import mut1, mut2, mut3
from recurrax.cells.rnn import rnn
from recurrax.protocols import Cell

#: Each name's constructor and the options the name fixes.
_BUILDERS: dict[str, tuple[Callable[..., Cell], dict[str, Any]]] = {
    "rnn": (rnn, {}),
    "lstm": (lstm, {}),
    "lstm-i": (lstm, {"input_gate": False}),
    "lstm-f": (lstm, {"forget_gate": False}),
    "lstm-o": (lstm, {"output_gate": False}),
    "lstm-b": (lstm, {"forget_bias": 1.0}),
    "gru": (gru, {}),
    "mut1": (mut1, {}),
    "mut2": (mut2, {}),
    "mut3": (mut3, {}),
    "mingru": (mingru, {}),
    "minlstm": (minlstm, {}),
    "lru": (lru, {}),
}

#: The cells whose recurrence is linear in the carry (`Cell.linear` set).
LINEAR_NAMES: tuple[str, ...] = ("mingru", "minlstm", "lru")
#: The ten cells of Jozefowicz et al. (2015), the ones the study compares.
NAMES: tuple[str, ...] = tuple(n for n in _BUILDERS if n not in LINEAR_NAMES)


def get(name: str, hidden_size: int, **kwargs: Any) -> Cell:
    """Build the cell called `name` (one of `NAMES`, exactly as Jozefowicz et
    al. (2015) define it, or of `LINEAR_NAMES`) with `hidden_size` units.
    `kwargs` go to the constructor (e.g. `initializers=Initializers(...)`)."""
    known = f"{', '.join(NAMES)} (NAMES) or {', '.join(LINEAR_NAMES)} (LINEAR_NAMES)"
    if not isinstance(name, str):
        raise TypeError(
            f"cells.get: name must be a str, one of: {known}; got {type(name).__name__} {name!r}"
        )
    try:
        builder, fixed = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown cell name {name!r}; expected one of: {known}") from None
    clash = sorted(set(fixed) & set(kwargs))
    if clash:
        raise TypeError(
            f"cells.get: {name!r} fixes {', '.join(f'{k}={fixed[k]!r}' for k in clash)}; "
            f"call recurrax.cells.{builder.__name__}(...) to choose {', '.join(clash)} yourself"
        )
    return builder(hidden_size, **fixed, **kwargs)


__all__ = [
    "LINEAR_NAMES", "NAMES", "get", "gru", "lru", "lstm", "mingru", "minlstm", "mut1", "mut2",
    "mut3", "recurrent_matmul", "rnn",
]
