"""Training: a train step with optax, learning-rate rules, and what long runs need.

`recurrax.train` itself holds the single-model step (`TrainState`,
`make_train_step`, `make_optimizer`, the plateau and anneal rules, `evaluate`);
its submodules hold `population` (many members trained as one program),
`batching` (TBPTT windows and example batches), `checkpoint` and `results`
(an append-only JSONL record that a rerun resumes from).
"""

from recurrax.train import batching, checkpoint, population, results
from recurrax.train.step import (
    Anneal,
    LossFn,
    Plateau,
    TrainState,
    anneal_init,
    anneal_update,
    create_train_state,
    evaluate,
    get_learning_rate,
    make_optimizer,
    make_train_step,
    plateau_init,
    plateau_update,
    set_learning_rate,
)

__all__ = [
    "Anneal", "LossFn", "Plateau", "TrainState", "anneal_init", "anneal_update", "batching",
    "checkpoint", "create_train_state", "evaluate", "get_learning_rate", "make_optimizer",
    "make_train_step", "plateau_init", "plateau_update", "population", "results",
    "set_learning_rate",
]
