"""The architecture search of Jozefowicz et al. (2015): cells as graphs
(`graph`), their mutations (`mutations`), a population of different graphs
run as one program (`universal`), and the staged search loop itself (the
names re-exported here from `loop`)."""

from recurrax.search import graph, mutations, universal
from recurrax.search.loop import (
    Evaluate,
    Proposer,
    Stage,
    State,
    describe,
    load,
    passes,
    propose,
    queues,
    reference_best,
    relative,
    run,
    seed_round,
    table,
)

__all__ = [
    "Evaluate", "Proposer", "Stage", "State", "describe", "graph", "load", "mutations", "passes",
    "propose", "queues", "reference_best", "relative", "run", "seed_round", "table", "universal",
]
