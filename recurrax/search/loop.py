r"""The architecture search of Jozefowicz et al. (2015), as a resumable loop.

A list of the best cells (`keep` of them, the paper's 100) starts from the
seed cells (the LSTM and the GRU); baseline cells (MUT1-3) are evaluated
beside them under the same budget and never mutated. Each round fills a
population of evaluations; each is either

* a re-evaluation (probability `p_reevaluate`): a listed cell with fresh
  hyperparameters, or
* a child: a listed cell mutated one to three times (`recurrax.search.mutations`),
  never a cell evaluated before (`graph.canonical`), and one that `accept`s
  (e.g. fits the universal cell's layout),

and goes through the stages in order (memorization, arithmetic, XML, language
modelling in the paper). A stage scores an evaluation by its validation
result relative to the reference cell's (the GRU's) best so far on that stage,

    r_s = score / best_ref(s)   (higher is better),   best_ref(s) / score   (lower is better)

and a child goes on to the next stage only if `r_s ≥ bar_s`. A cell's fitness
is the minimum over the stages of its best `r_s` (so the reference has
fitness 1); the list keeps the cells of highest fitness that passed every
stage. Seeds and re-evaluations pass every stage unfiltered.

The evaluations of one stage are trained together: each stage has a queue,
and a stage runs when `population` evaluations wait in it (the last stage
first), so every stage is one compiled program trained on full populations;
at the end the queues are flushed (padded). Every created evaluation and every
stage score is one line of the log (a `recurrax.search.records.Evaluation` or
`Score` in a `recurrax.train.results.ResultsFile`); a rerun rebuilds the list
and the queues from it and goes on where it stopped. What cannot go on (a log
of another search, no cell to mutate) raises `SearchError`, a `ValueError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from recurrax.search import graph as G
from recurrax.search import mutations, records
from recurrax.search.equations import equations
from recurrax.search.records import Evaluation, Origin, Score
from recurrax.train.results import ResultsFile


class SearchError(ValueError):
    """A search that cannot start or go on: its log holds another search's
    evaluations or a line that is no search record, its reference is no seed,
    its population cannot hold the seeds, or no new cell can be proposed."""


class Stage(NamedTuple):
    name: str
    bar: float                   # a child goes on when its r_s >= bar
    higher_is_better: bool = True


class State(NamedTuple):
    """What the log says: `evals` id -> its `Evaluation`, `scores` id ->
    {stage: score or None (diverged)}, and `problems`, the log's lines that
    could not be read (torn by a killed writer; ignored)."""

    evals: dict[str, Evaluation]
    scores: dict[str, dict[str, float | None]]
    problems: tuple[str, ...] = ()


def load(log: ResultsFile) -> State:
    """The state `log` records (the first record of an id, or of an id and a
    stage, counts); `SearchError` naming the file for a line that is no
    search record."""
    lines, problems = log.read()
    evals: dict[str, Evaluation] = {}
    scores: dict[str, dict[str, float | None]] = {}
    for line in lines:
        try:
            record = records.from_json(line)
        except ValueError as e:
            raise SearchError(f"{log.path}: {e}; is it a search log?") from None
        if isinstance(record, Evaluation):
            evals.setdefault(record.id, record)
            scores.setdefault(record.id, {})
        else:
            scores.setdefault(record.id, {}).setdefault(record.stage, record.score)
    return State(evals, scores, tuple(problems))


def reference_best(state: State, stages: list[Stage], reference: str) -> dict[str, float]:
    """The reference cell's best score per stage (stages it has no score on are absent)."""
    best: dict[str, float] = {}
    for i, e in state.evals.items():
        if e.name != reference:
            continue
        for s in stages:
            v = state.scores[i].get(s.name)
            if v is not None:
                old = best.get(s.name, v)
                best[s.name] = max(old, v) if s.higher_is_better else min(old, v)
    return best


def relative(stage: Stage, score: float | None, best: dict[str, float]) -> float | None:
    """`r_s` of one score (None: diverged, or no reference yet)."""
    ref = best.get(stage.name)
    if score is None or ref is None:
        return None
    tiny = 1e-9  # a reference (or score) of 0 divides by this instead
    return score / max(ref, tiny) if stage.higher_is_better else ref / max(score, tiny)


def passes(stage: Stage, evaluation: Evaluation, score: float | None,
           best: dict[str, float]) -> bool:
    if evaluation.origin != "child":
        return True
    r = relative(stage, score, best)
    return r is not None and r >= stage.bar


class RankedCell(NamedTuple):
    """One cell (graph key) of `table`: what its first evaluation says of it,
    its best `r_s` per stage (`relative`), its `fitness` (their minimum) and
    its number of `evaluations`."""

    key: str
    name: str | None
    graph: str
    origin: Origin
    relative: dict[str, float]
    evaluations: int
    mutations: tuple[str, ...]
    parent: str | None
    fitness: float


def table(state: State, stages: list[Stage], reference: str) -> list[RankedCell]:
    """One row per cell with a score on every stage, best first."""
    best = reference_best(state, stages, reference)
    first: dict[str, Evaluation] = {}
    evaluations: dict[str, int] = {}
    best_relative: dict[str, dict[str, float]] = {}
    for i, e in state.evals.items():
        first.setdefault(e.graph_key, e)
        evaluations[e.graph_key] = evaluations.get(e.graph_key, 0) + 1
        rel = best_relative.setdefault(e.graph_key, {})
        for s in stages:
            r = relative(s, state.scores[i].get(s.name), best)
            if r is not None:
                rel[s.name] = max(rel.get(s.name, r), r)
    rows = [RankedCell(key, e.name, e.graph, e.origin, best_relative[key], evaluations[key],
                       e.mutations, e.parent, min(best_relative[key][s.name] for s in stages))
            for key, e in first.items() if all(s.name in best_relative[key] for s in stages)]
    return sorted(rows, key=lambda r: -r.fitness)


def queues(state: State, stages: list[Stage], reference: str) -> list[list[str]]:
    """The evaluations waiting for each stage: created and not yet scored on
    stage 0, or scored on the stage before, passed it, and not scored here."""
    best = reference_best(state, stages, reference)
    out: list[list[str]] = [[] for _ in stages]
    for i, e in state.evals.items():
        done = state.scores[i]
        for k, s in enumerate(stages):
            if s.name not in done:
                out[k].append(i)
                break
            if not passes(s, e, done[s.name], best):
                break
    return out


class Proposer(NamedTuple):
    """How a round's evaluations are drawn."""

    draw_hyper: Callable[[np.random.Generator], dict[str, Any]]
    accept: Callable[[G.Graph], bool] = lambda g: True
    p_reevaluate: float = 0.2
    keep: int = 100
    max_nodes: int | None = None


def propose(state: State, stages: list[Stage], reference: str, proposer: Proposer,
            rng: np.random.Generator, n: int, round_index: int,
            first_id: int) -> list[Evaluation]:
    """`n` new evaluations (children and re-evaluations) for one round."""
    listed = [r for r in table(state, stages, reference) if r.origin != "baseline"]
    listed = listed[:proposer.keep]
    if not listed:
        raise SearchError("search: no cell has passed every stage yet (the seeds' round "
                          "must finish first)")
    seen = {e.graph_key for e in state.evals.values()}
    out = []
    for j in range(n):
        eval_id, hyper = f"e{first_id + j}", proposer.draw_hyper(rng)
        if rng.random() < proposer.p_reevaluate:
            cell = listed[rng.integers(len(listed))]
            out.append(Evaluation(eval_id, round_index, "reevaluate", cell.key, cell.graph,
                                  cell.name, None, cell.mutations, hyper))
            continue
        for _ in range(100):
            parent = listed[rng.integers(len(listed))]
            child, how = mutations.mutate(G.from_json(parent.graph), rng,
                                          max_nodes=proposer.max_nodes)
            key = G.canonical(child)
            if key not in seen and proposer.accept(child):
                break
        else:
            raise SearchError("search: 100 mutations in a row gave only cells already "
                              "evaluated or not accepted")
        seen.add(key)
        out.append(Evaluation(eval_id, round_index, "child", key, G.to_json(child), None,
                              parent.key, tuple(how), hyper))
    return out


def seed_round(seeds: dict[str, G.Graph], baselines: dict[str, G.Graph], proposer: Proposer,
               rng: np.random.Generator, population: int) -> list[Evaluation]:
    """Round 0: `population` evaluations of the seed and baseline cells, in turn."""
    cells = {**seeds, **baselines}
    if population < len(cells):
        raise SearchError(f"search: a population of {population} cannot hold the "
                          f"{len(cells)} seed and baseline cells")
    out = []
    names = list(cells)
    for j in range(population):
        name = names[j % len(names)]
        g = cells[name]
        origin = "seed" if name in seeds else "baseline"
        out.append(Evaluation(f"e{j}", 0, origin, G.canonical(g), G.to_json(g), name, None, (),
                              proposer.draw_hyper(rng)))
    return out


#: `evaluate(stage, graphs, hypers)`: a score per evaluation (None: diverged).
Evaluate = Callable[[Stage, list[G.Graph], list[dict[str, Any]]], Sequence[float | None]]


def run(log: ResultsFile, stages: list[Stage], seeds: dict[str, G.Graph], evaluate: Evaluate,
        proposer: Proposer, *, population: int, candidates: int, reference: str = "gru",
        baselines: dict[str, G.Graph] | None = None, seed: int = 0,
        on_stage: Callable[[Stage, list[str], State], Any] | None = None,
        tag: dict[str, Any] | None = None) -> State:
    """Search until `candidates` children have been created and every queue
    is empty; resumes from `log`. `evaluate(stage, graphs, hypers)` trains the
    evaluations of one population on one stage and returns a score (or None,
    diverged) per evaluation. `on_stage(stage, ids, state)` is called after
    each stage's population (for progress). `tag` is written into every
    evaluation record; a log holding records with another tag is refused with
    a `SearchError` (it belongs to another definition of the search)."""
    if reference not in seeds:
        raise SearchError(f"search: the reference {reference!r} must be one of the seeds "
                          f"{sorted(seeds)}")
    tag = tag or {}
    state = load(log)
    other = sum(any(e.tag.get(k) != v for k, v in tag.items()) for e in state.evals.values())
    if other:
        raise SearchError(f"{log.path} holds {other} evaluations of another search ({tag} "
                          f"expected); move that file away or log to a new one")
    if not state.evals:
        log.extend(replace(r, tag=tag).to_json()  # a round is written whole
                   for r in seed_round(seeds, baselines or {}, proposer,
                                       np.random.default_rng([seed, 0]), population))
        state = load(log)
    while True:
        waiting = queues(state, stages, reference)
        children = sum(e.origin == "child" for e in state.evals.values())
        full = [k for k, q in enumerate(waiting) if len(q) >= population]
        if full:
            k = full[-1]
        elif children < candidates:  # a new round fills the first queue
            rounds = 1 + max(e.round for e in state.evals.values())
            rng = np.random.default_rng([seed, rounds])
            log.extend(replace(r, tag=tag).to_json()
                       for r in propose(state, stages, reference, proposer, rng,
                                        population - len(waiting[0]), rounds, len(state.evals)))
            state = load(log)
            continue
        elif any(waiting):  # the end: flush the queues, earliest first
            k = next(k for k, q in enumerate(waiting) if q)
        else:
            return state
        ids = waiting[k][:population]
        graphs = [G.from_json(state.evals[i].graph) for i in ids]
        scores = evaluate(stages[k], graphs, [state.evals[i].hyper for i in ids])
        log.extend(Score(i, stages[k].name,  # a stage's scores are written whole
                         None if v is None or not np.isfinite(v) else float(v)).to_json()
                   for i, v in zip(ids, scores, strict=True))
        state = load(log)
        if on_stage is not None:
            on_stage(stages[k], ids, state)


def describe(row: RankedCell) -> str:
    """A cell of `table` as its equations, one per line."""
    return "\n".join(equations(G.from_json(row.graph)))
