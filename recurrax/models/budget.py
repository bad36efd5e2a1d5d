r"""Equal-size comparisons: the hidden size that fits a parameter budget.

Jozefowicz et al. (2015) compared architectures of (roughly) equal size. For
a token model (embedding of width E, L cell layers of H units, a readout to
V_out classes) the parameter count is

    N(H) = V_in·E + Σ_l P_cell(D_l, H) + H·V_out + V_out,   D_1 = E, D_l = H,

where P_cell(D, H) is what the cell's `init(key, D)` creates (for an LSTM
4(DH + H² + H)). Counts come from `jax.eval_shape` of the real `init`, so
they are exact for every cell, including the ablations. `hidden_for_budget`
returns the largest H with N(H) ≤ budget (N grows with H, so a bisection).
"""

from __future__ import annotations

import math

import jax

from recurrax.models import language_model as models


def count_params(cell: str, hidden_size: int, *, vocab_in: int, vocab_out: int,
                 num_layers: int = 1, embed_size: int | None = None,
                 inputs: str = "tokens") -> int:
    """Parameters of `models.language_model(cell, ...)` with these sizes."""
    lm = models.language_model(cell, vocab_in, hidden_size, num_layers, embed_size=embed_size,
                               inputs=inputs, output_size=vocab_out)
    shapes = jax.eval_shape(lm.init, jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def hidden_for_budget(cell: str, budget: int, *, vocab_in: int, vocab_out: int,
                      num_layers: int = 1, embed_size: int | None = None,
                      inputs: str = "tokens") -> int:
    """The largest hidden size whose model has at most `budget` parameters.

    `embed_size=None` ties the embedding width to H (as MUT1 and MUT2 need).
    Raises ValueError when even H = 1 is over budget.
    """
    def n(h: int) -> int:
        return count_params(cell, h, vocab_in=vocab_in, vocab_out=vocab_out,
                            num_layers=num_layers, embed_size=embed_size, inputs=inputs)

    if n(1) > budget:
        raise ValueError(f"hidden_for_budget: a {num_layers}-layer {cell} model needs "
                         f"{n(1)} parameters even with hidden size 1; budget is {budget}")
    low, high = 1, 2
    while n(high) <= budget:
        low, high = high, high * 2
    while high - low > 1:  # n(low) <= budget < n(high)
        mid = (low + high) // 2
        low, high = (mid, high) if n(mid) <= budget else (low, mid)
    return low
