"""The architecture search of Jozefowicz et al. (2015): cells as graphs
(`graph`; `equations` writes one as the paper does, `baselines` holds the
paper's cells), their mutations (`mutations`), a population of different
graphs run as one program (`universal`), the search log's typed records
(`records`) and the staged search loop itself (the names re-exported here
from `loop`)."""

from recurrax.search import baselines, equations, graph, mutations, records, universal
from recurrax.search.loop import (
    Evaluate,
    Proposer,
    RankedCell,
    SearchError,
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
    "Evaluate", "Proposer", "RankedCell", "SearchError", "Stage", "State", "baselines",
    "describe", "equations", "graph", "load", "mutations", "passes", "propose", "queues",
    "records", "reference_best", "relative", "run", "seed_round", "table", "universal",
]
