"""The search loop (`recurrax.search`) with a stand-in for training: the
filters, the queues, the list, and a run killed and resumed."""

import hashlib
import re

import pytest

from experiments.cli import DurableResults
from experiments.jozefowicz import __main__ as cli
from experiments.jozefowicz import arch_search
from recurrax import search
from recurrax.search import graph as G
from recurrax.search import records, universal
from recurrax.search.baselines import GRAPHS
from recurrax.train.results import ResultsFile

STAGES = [search.Stage("memorization", 0.9), search.Stage("arithmetic", 0.9),
          search.Stage("words", 0.9, higher_is_better=False)]
SEEDS = {"lstm": GRAPHS["lstm"], "gru": GRAPHS["gru"]}
BASELINES = {n: GRAPHS[n] for n in ("mut1", "mut2", "mut3")}
POPULATION = 8


def _unit(*parts) -> float:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


class FakeTraining:
    """A score per (cell, stage), times a factor of the hyperparameters; the
    GRU's ignores them, so its best is known after round 0."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = [], fail_after

    def __call__(self, stage, graphs, hypers):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append((stage.name, len(graphs)))
        return [self.score(stage, g, h) for g, h in zip(graphs, hypers, strict=True)]

    @staticmethod
    def score(stage, g, hyper):
        base = 0.4 + 0.6 * _unit(G.canonical(g), stage.name)
        if G.canonical(g) == G.canonical(GRAPHS["gru"]):
            base = 0.7
        else:
            base *= 0.9 + 0.2 * hyper["q"]
        return base if stage.higher_is_better else 10 / base


PROPOSER = search.Proposer(draw_hyper=lambda rng: {"q": float(rng.random())},
                           accept=universal.fits, p_reevaluate=0.25, keep=10)


def _run(path, evaluate, candidates=30):
    log = path if isinstance(path, ResultsFile) else ResultsFile(path)
    return search.run(log, STAGES, SEEDS, evaluate, PROPOSER,
                      population=POPULATION, candidates=candidates, baselines=BASELINES, seed=3)


def test_search_runs_full_populations_and_filters_children(tmp_path):
    train = FakeTraining()
    state = _run(tmp_path / "log.jsonl", train)
    children = [e for e in state.evals.values() if e.origin == "child"]
    assert len(children) >= 30
    assert len({e.graph_key for e in children}) == len(children)
    assert not {e.graph_key for e in children} & {G.canonical(g) for g in
                                                      [*SEEDS.values(), *BASELINES.values()]}
    assert all(n == POPULATION for _, n in train.calls[:-len(STAGES)])  # all but the flush
    assert not any(search.queues(state, STAGES, "gru"))
    best = search.reference_best(state, STAGES, "gru")
    assert best == {"memorization": 0.7, "arithmetic": 0.7, "words": pytest.approx(10 / 0.7)}
    for e in children:
        done = state.scores[e.id]
        for k, s in enumerate(STAGES[:-1]):
            if STAGES[k + 1].name in done:  # it went on, so it passed stage k
                r = search.relative(s, done[s.name], best)
                assert r is not None and r >= s.bar
        reached = [s.name for s in STAGES if s.name in done]
        assert reached == [s.name for s in STAGES[:len(reached)]]
    rows = search.table(state, STAGES, "gru")
    assert rows == sorted(rows, key=lambda r: -r.fitness)
    gru = next(r for r in rows if r.name == "gru")
    assert gru.fitness == pytest.approx(1.0)
    for r in rows:
        assert r.fitness == pytest.approx(min(r.relative.values()))


def test_a_killed_search_resumes_to_the_same_result(tmp_path):
    whole = _run(tmp_path / "whole.jsonl", FakeTraining())
    path = tmp_path / "killed.jsonl"
    for fail_after in (3, 4, 2):
        with pytest.raises(KeyboardInterrupt):
            _run(path, FakeTraining(fail_after=fail_after))
    resumed = _run(path, FakeTraining())
    strip = lambda rows: [(r.key, round(r.fitness, 9), r.evaluations) for r in rows]
    assert strip(search.table(resumed, STAGES, "gru")) == strip(search.table(whole, STAGES, "gru"))


def test_relative_scores():
    best = {"memorization": 0.5, "words": 100.0}
    assert search.relative(STAGES[0], 0.25, best) == 0.5
    assert search.relative(STAGES[2], 200.0, best) == 0.5       # lower is better
    assert search.relative(STAGES[1], 0.3, best) is None         # no reference yet
    assert search.relative(STAGES[0], None, best) is None        # diverged


def test_the_reference_must_be_a_seed(tmp_path):
    with pytest.raises(ValueError, match="reference"):
        search.run(ResultsFile(tmp_path / "x.jsonl"), STAGES, {"lstm": GRAPHS["lstm"]},
                   FakeTraining(), PROPOSER, population=4, candidates=1)


def test_log_records_round_trip_and_refuse_another_kind():
    e = records.Evaluation("e3", 1, "child", "key", G.to_json(GRAPHS["gru"]), None, "parent",
                           ("swap_activation: z sigmoid -> tanh",), {"q": 0.5},
                           tag={"preset": "smoke"})
    s = records.Score("e3", "memorization", None)
    line = e.to_json()
    assert line["kind"] == "eval" and line["preset"] == "smoke"   # the tag sits at the top
    assert records.Evaluation.from_json(line) == e == records.from_json(line)
    assert records.Score.from_json(s.to_json()) == s == records.from_json(s.to_json())
    with pytest.raises(ValueError, match="kind 'score'"):
        records.Evaluation.from_json(s.to_json())
    with pytest.raises(ValueError, match="kind 'eval'"):
        records.Score.from_json(line)
    with pytest.raises(ValueError, match="lacks the field"):
        records.Score.from_json({"kind": "score", "id": "e3", "stage": "memorization"})
    with pytest.raises(ValueError, match="kind None"):
        records.from_json({"key": "a run's trial", "metrics": {}})
    with pytest.raises(ValueError, match="own fields"):
        records.Evaluation("e4", 1, "seed", "k", "{}", "gru", None, (), {}, tag={"round": 2})


def test_a_log_of_another_search_or_of_no_search_is_refused(tmp_path):
    path = tmp_path / "log.jsonl"
    run = lambda tag: search.run(ResultsFile(path), STAGES, SEEDS, FakeTraining(), PROPOSER,
                                 population=POPULATION, candidates=0, baselines=BASELINES,
                                 tag=tag)
    run({"preset": "a"})
    with pytest.raises(search.SearchError, match=f"{re.escape(str(path))} holds {POPULATION} "
                                                 f"evaluations of another search"):
        run({"preset": "b"})
    ResultsFile(path).append({"key": "a run's trial"})
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: .*kind None"):
        search.load(ResultsFile(path))
    with pytest.raises(SystemExit, match="is it a search log"):
        cli.main(["report", str(path)])


def test_torn_lines_are_returned_not_printed(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    _run(path, FakeTraining(), candidates=4)
    with open(path, "a") as f:
        f.write('{"kind": "score", "id": "e')   # a writer killed mid-line
    state = search.load(ResultsFile(path))
    assert len(state.problems) == 1 and "torn" in state.problems[0]
    assert capsys.readouterr().out == ""
    assert state.evals == search.load(ResultsFile(path)).evals


def test_report_prints_the_top_cells_as_equations(tmp_path):
    path = tmp_path / "log.jsonl"
    _run(path, FakeTraining(), candidates=10)
    text = cli.report_any(path)
    for name in ("gru", "lstm", "mut1", "mut2", "mut3", "#1"):
        assert f"| {name} |" in text
    assert "h' = " in text and "fitness" in text


@pytest.mark.slow
def test_the_smoke_search_trains_real_cells(tmp_path, capsys):
    """The command end to end on the smoke preset (about 90 s: two stages compile)."""
    cli.main(["search", "--preset", "smoke", "--results", str(tmp_path / "s.jsonl"),
              "--candidates", "4", "--stall-seconds", "0"])
    out = capsys.readouterr().out
    assert "| gru | 1.000 |" in out and "#1" in out
    state = search.load(ResultsFile(tmp_path / "s.jsonl"))
    assert sum(e.origin == "child" for e in state.evals.values()) >= 4
    scores = [v for s in state.scores.values() for v in s.values()]
    assert all(v is None or 0 <= v <= 1 for v in scores)
    assert arch_search.PRESETS["smoke"].population == 8


class _KilledAtBatch(DurableResults):
    """A batched log whose `at`-th batch write dies before writing (a kill)."""

    def __init__(self, path, at):
        super().__init__(path, batched=True)
        self.at, self.batches = at, 0

    def _write_batch(self, records):
        self.batches += 1
        if self.batches == self.at:
            raise KeyboardInterrupt("killed")
        super()._write_batch(records)


def test_a_search_logged_in_batches_resumes_on_the_same_path_from_every_batch(tmp_path):
    """A log written a round or a stage's scores at a time (`DurableResults`,
    batched): killed before any of its batches, the resumed search ends with
    the uninterrupted one's log and table."""
    whole = _KilledAtBatch(tmp_path / "whole.jsonl", at=0)
    reference = _run(whole, FakeTraining(), candidates=12)
    assert whole.batches >= 8
    strip = lambda s: [(r.key, round(r.fitness, 9), r.evaluations)
                       for r in search.table(s, STAGES, "gru")]
    for at in range(1, whole.batches + 1):
        path = tmp_path / f"killed-{at}.jsonl"
        with pytest.raises(KeyboardInterrupt):
            _run(_KilledAtBatch(path, at), FakeTraining(), candidates=12)
        resumed = _run(DurableResults(path, batched=True), FakeTraining(), candidates=12)
        assert resumed.evals == reference.evals and resumed.scores == reference.scores, at
        assert strip(resumed) == strip(reference)


def test_a_search_killed_while_logging_its_first_round_resumes(tmp_path):
    """The seeds' round half written (a kill between two lines of a log
    written line by line) can only be resumed from a whole round: the batched
    log never leaves half of one."""
    path = tmp_path / "log.jsonl"
    with pytest.raises(KeyboardInterrupt):
        _run(_KilledAtBatch(path, at=1), FakeTraining(), candidates=4)
    assert not path.exists() or not path.read_text().strip()
    state = _run(DurableResults(path, batched=True), FakeTraining(), candidates=4)
    assert sum(e.origin == "child" for e in state.evals.values()) >= 4


class _KilledAtExtend(ResultsFile):
    """A plain log whose `at`-th batch (`extend`) dies before writing; the
    search never writes a single line on its own (`append` is refused)."""

    def __init__(self, path, at):
        super().__init__(path)
        self.at, self.batches = at, 0

    def append(self, record):
        raise AssertionError("the search writes whole batches only")

    def extend(self, records, *, where="extend"):
        self.batches += 1
        if self.batches == self.at:
            raise KeyboardInterrupt("killed")
        super().extend(records, where=where)


def test_a_plain_log_is_written_a_batch_at_a_time_and_resumes_from_every_batch(tmp_path):
    """`recurrax.search.run` with a plain `ResultsFile`: each round and each
    stage's scores reach the file in one write, so a search killed before any
    batch resumes to the uninterrupted log and table."""
    whole = _KilledAtExtend(tmp_path / "whole.jsonl", at=0)
    reference = _run(whole, FakeTraining(), candidates=12)
    assert whole.batches >= 8
    for at in range(1, whole.batches + 1, 2):
        path = tmp_path / f"killed-{at}.jsonl"
        with pytest.raises(KeyboardInterrupt):
            _run(_KilledAtExtend(path, at), FakeTraining(), candidates=12)
        resumed = _run(ResultsFile(path), FakeTraining(), candidates=12)
        assert resumed.evals == reference.evals and resumed.scores == reference.scores, at
