"""Models built from cells: the token language model (`language_model`, sized
to a parameter budget by `hidden_for_budget`), sampling (`sample`), greedy and
beam decoding (`beam`) and the show-attend-tell captioner (`captioner`)."""

from recurrax.models import beam, budget, captioner, sample
from recurrax.models.budget import count_params, hidden_for_budget
from recurrax.models.language_model import TokenModel, language_model

__all__ = [
    "TokenModel", "beam", "budget", "captioner", "count_params", "hidden_for_budget",
    "language_model", "sample",
]
