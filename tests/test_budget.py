"""Budget-matched hidden sizes against parameter counts written by hand."""

import pytest

from recurrax.models.budget import count_params, hidden_for_budget

# Per layer, from the equations in docs/cells.md: (input kernels, recurrent kernels, biases)
BLOCKS = {"rnn": (1, 1, 1), "lstm": (4, 4, 4), "lstm-i": (3, 3, 3), "lstm-f": (3, 3, 3),
          "lstm-o": (3, 3, 3), "lstm-b": (4, 4, 4), "gru": (3, 3, 3), "mut1": (2, 2, 3),
          "mut2": (2, 3, 3), "mut3": (3, 3, 3)}


def by_hand(cell, H, V_in, V_out, L, E):
    x, h, b = BLOCKS[cell]
    layers = sum(x * D * H + h * H * H + b * H for D in [E] + [H] * (L - 1))
    return V_in * E + layers + H * V_out + V_out


@pytest.mark.parametrize("cell", sorted(BLOCKS))
def test_count_params_matches_the_equations(cell):
    for H, L in [(7, 1), (12, 3)]:
        E = H if cell in ("mut1", "mut2") else 5
        got = count_params(cell, H, vocab_in=11, vocab_out=11, num_layers=L, embed_size=E)
        assert got == by_hand(cell, H, 11, 11, L, E)
    assert count_params("lstm", 9, vocab_in=11, vocab_out=4, embed_size=5) == by_hand(
        "lstm", 9, 11, 4, 1, 5)
    # float inputs (piano rolls): a dense input layer has a bias of E more
    assert count_params("gru", 9, vocab_in=11, vocab_out=11, embed_size=5,
                        inputs="features") == by_hand("gru", 9, 11, 11, 1, 5) + 5


@pytest.mark.parametrize("cell", sorted(BLOCKS))
@pytest.mark.parametrize("layers", [1, 2])
def test_hidden_for_budget_is_the_largest_that_fits(cell, layers):
    budget = 20000
    H = hidden_for_budget(cell, budget, vocab_in=30, vocab_out=30, num_layers=layers)
    assert by_hand(cell, H, 30, 30, layers, H) <= budget
    assert budget < by_hand(cell, H + 1, 30, 30, layers, H + 1)


def test_the_ablations_get_more_units_than_the_lstm():
    sizes = {c: hidden_for_budget(c, 50000, vocab_in=30, vocab_out=30) for c in BLOCKS}
    assert sizes["rnn"] > sizes["mut1"] > sizes["lstm-f"] == sizes["gru"] > sizes["lstm"]


def test_a_budget_too_small_is_refused():
    with pytest.raises(ValueError, match="even with hidden size 1"):
        hidden_for_budget("lstm", 10, vocab_in=30, vocab_out=30)
