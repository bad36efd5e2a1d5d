"""The paper's four findings, computed from our trials, each with a bootstrap
interval and a verdict.

Score. A cell is one (task, architecture); its trials j = 1..n have a
validation value v_j and a test value t_j (missing, NaN, for a diverged trial).
Its score is the test value of its best trial on validation (best-of-N):

    s = t_{j*},   j* = argmax_j v_j   (argmin for perplexity and NLL),

ties going to the first trial in file order and trials without a validation
value never chosen: the same trial the report's table shows. The findings use
the accuracy tasks, arithmetic and xml, those present in the records; a
finding skips a task on which an architecture it needs has no finished trial,
and has no verdict (null, with the reason) when no task is left.

Statistics. With s_t(a) the score of architecture a on task t, each finding
has a per-task difference d_t, and its statistic D is the mean of d_t over the
usable tasks (G = {lstm, gru, mut1, mut2, mut3}, M = {gru, mut1, mut2, mut3}):

    (a) d_t = mean_{a in G} s_t(a) - mean(s_t(rnn), s_t(lstm-f))
    (b) d_t = mean(s_t(lstm-i), s_t(lstm-o)) - s_t(lstm-f)
    (c) d_t = s_t(lstm-b) - s_t(lstm)
    (d) d_t = mean_{a in M} s_t(a) - s_t(lstm),
        beside it the spread S = mean_t [ max_{a in M} s_t(a) - min_{a in M} s_t(a) ]
        ("close to each other", as information: its interval, no verdict).

A finding holds when D > 0. Each d_t is shown too, with its own interval, so
a finding carried by one task alone shows as such. How far is "far" in (a)
D's size tells (the paper's own d_t: about 0.6 on Arith., 0.2 on XML).

Why means, not minima and maxima (such as min_t or max(rnn, lstm-f)): with
every cell drawn from one distribution, a minimum over noisy differences is
below 0 in expectation, and in simulation (16 trials a cell, 100 data sets)
such statistics said "not supported" in 13 to 31% of the data sets (minima
over tasks) and in 43 to 80% (minima and maxima over architectures as well);
with the means above, D is centred on 0 when the cells do not differ. The
same D computed from the paper's Table 2 is shown beside ours.

Uncertainty. A bootstrap over trials, B resamples (default 2000, seed 0, so
the report is deterministic). Trial j of every cell shares its hyperparameter
draws (common random numbers), so when every cell used holds the same set of
trial indices, each resample draws n indices with replacement and applies them
to every cell (paired bootstrap); otherwise each cell's trials are resampled on
their own. In each resample every cell's best-of-N is chosen again on
validation, within the resample, and the statistic recomputed, D*_1..D*_B. A
resample in which some cell drew only diverged trials has no score for that
cell and is dropped (the number dropped is reported). The 95% interval is
the 2.5 and 97.5 percentiles of the D*_b kept, and the verdict

    supported = True if lo > 0,  False if hi < 0,  None (not separable from noise) otherwise.

The bootstrap of a best-of-N is rough: a resample holds about 63% of the
distinct trials, so its best is often the best of all n (an atom at the point
value) and otherwise lower. The bias is alike for every cell and largely
cancels in the differences, but the intervals are too narrow: in the same
simulation of cells that do not differ (8 or 16 trials a cell, 100 data
sets, 2000 resamples), a verdict other than "not separable" came in 6 to 12%
of data sets per finding (5% nominal). Read a verdict with that in mind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from experiments.jozefowicz import paper
from recurrax.train.results import unique

COLUMNS = {"arithmetic": "accuracy", "xml": "accuracy", "words": "perplexity",
           "music": "nll_per_step"}  # the metric each task is scored by
HIGHER = {"accuracy": True, "perplexity": False, "nll_per_step": False}
TASKS = ("arithmetic", "xml")  # the tasks of the findings
RESAMPLES, SEED, LEVEL = 2000, 0, 0.95
VERDICTS = {True: "supported", False: "not supported", None: "not separable from noise"}

Key = tuple[str, str]  # (task, arch)


@dataclass(frozen=True)
class Cell:
    """The trials of one (task, arch), in file order."""
    trials: np.ndarray  # the trial indices
    valid: np.ndarray   # validation values, NaN where there is none (diverged)
    test: np.ndarray    # test values, NaN where there is none
    diverged: int       # how many trials diverged
    higher: bool        # whether a higher validation value is better


def trial_index(record: dict) -> int:
    """A trial's index: its "trial" field, else the last part of its key."""
    return int(record["trial"]) if "trial" in record else int(record["key"].rsplit("/", 1)[1])


def _values(records: list[dict], name: str) -> np.ndarray:
    return np.array([np.nan if r["metrics"].get(name) is None else float(r["metrics"][name])
                     for r in records])


def cells(records: list[dict]) -> dict[Key, Cell]:
    """Every cell's trials (the first record of each key counts)."""
    grouped: dict[Key, list[dict]] = defaultdict(list)
    for r in unique(records, key=lambda r: r["key"]):
        grouped[(r["task"], r["arch"])].append(r)
    out = {}
    for (task, arch), rs in grouped.items():
        metric = COLUMNS[task]
        out[(task, arch)] = Cell(np.array([trial_index(r) for r in rs]),
                                 _values(rs, f"valid_{metric}"), _values(rs, f"test_{metric}"),
                                 sum(bool(r["diverged"]) for r in rs), HIGHER[metric])
    return out


def best_of_n(valid: np.ndarray, test: np.ndarray, higher: bool) -> np.ndarray:
    """Over the last axis: test[j*] with j* the first best of valid (max if
    `higher`, else min) among its finite values; NaN where valid has none."""
    ranked = np.where(np.isfinite(valid), valid if higher else -valid, -np.inf)
    best = np.argmax(ranked, axis=-1)
    chosen = np.take_along_axis(test, best[..., None], axis=-1)[..., 0]
    return np.where(np.isfinite(ranked).any(axis=-1), chosen, np.nan)


def score(cell: Cell) -> float:
    """The cell's best-of-N test value over all its trials (NaN if none finished)."""
    return float(best_of_n(cell.valid, cell.test, cell.higher))


def paired(cells_used: dict[Key, Cell]) -> bool:
    """Whether every cell holds the same set of distinct trial indices."""
    sets = {tuple(sorted(c.trials.tolist())) for c in cells_used.values()}
    return len(sets) == 1 and all(len(set(c.trials.tolist())) == len(c.trials)
                                  for c in cells_used.values())


def resample_scores(cells_used: dict[Key, Cell], resamples: int,
                    seed: int) -> tuple[dict[Key, np.ndarray], str]:
    """Each cell's best-of-N in each of `resamples` bootstrap resamples of its
    trials (shape (resamples,), NaN where a resample drew only diverged trials),
    and the scheme: "paired" (one draw of trial indices applied to every cell)
    or "independent" (one draw per cell, when the index sets differ)."""
    rng = np.random.default_rng(seed)
    if paired(cells_used):
        n = len(next(iter(cells_used.values())).trials)
        ranks = rng.integers(0, n, size=(resamples, n))  # into the sorted trial indices
        positions = {k: np.argsort(c.trials, kind="stable")[ranks] for k, c in cells_used.items()}
        scheme = "paired"
    else:
        positions = {k: rng.integers(0, len(c.trials), size=(resamples, len(c.trials)))
                     for k, c in sorted(cells_used.items())}
        scheme = "independent"
    return {k: best_of_n(cells_used[k].valid[p], cells_used[k].test[p], cells_used[k].higher)
            for k, p in positions.items()}, scheme


Scores = dict[str, np.ndarray]  # arch -> score, one value per resample


@dataclass(frozen=True)
class Measure:
    """A difference of scores on one task, d_t = `per_task`; over the tasks
    the statistic is their mean."""
    formula: str  # d_t, in words
    archs: tuple[str, ...]
    per_task: Callable[[Scores], np.ndarray]

    def __call__(self, by_task: dict[str, Scores]) -> np.ndarray:
        return np.mean([self.per_task(s) for s in by_task.values()], axis=0)


GATED = ("lstm", "gru", "mut1", "mut2", "mut3")
MUTANTS = ("gru", "mut1", "mut2", "mut3")


def _mean(s: Scores, archs: tuple[str, ...]) -> np.ndarray:
    return np.mean([s[a] for a in archs], axis=0)


@dataclass(frozen=True)
class Finding:
    name: str
    claim: str           # what is tested, in the report's words
    paper: str           # what the paper says (via the secondary source)
    statistic: Measure   # positive when the claim holds
    extras: tuple[tuple[str, Measure], ...] = ()  # reported beside, without a verdict


FINDINGS = (
    Finding("a", "Tanh (rnn) and LSTM-f are far behind LSTM, GRU and MUT1-3 on Arith. and XML",
            "without the forget gate, Arith. and XML fall to the Tanh RNN's level",
            Measure("mean(lstm, gru, mut1, mut2, mut3) - mean(rnn, lstm-f)",
                    ("rnn", "lstm-f") + GATED,
                    lambda s: _mean(s, GATED) - _mean(s, ("rnn", "lstm-f")))),
    Finding("b", "the forget gate matters most of the three gates: LSTM-f is the worst of the "
                 "ablations LSTM-i, LSTM-o, LSTM-f",
            "gate importance: forget gate >> input gate > output gate",
            Measure("mean(lstm-i, lstm-o) - lstm-f", ("lstm-i", "lstm-o", "lstm-f"),
                    lambda s: _mean(s, ("lstm-i", "lstm-o")) - s["lstm-f"])),
    Finding("c", "LSTM-b (forget-gate bias 1) is at least as good as LSTM",
            "LSTM-b beat both LSTM and GRU on almost every task",
            Measure("lstm-b - lstm", ("lstm-b", "lstm"), lambda s: s["lstm-b"] - s["lstm"])),
    Finding("d", "GRU and MUT1-3 are close to each other and ahead of the plain LSTM",
            "GRU beat LSTM on every task except language modelling; MUT1 matched GRU on "
            "language modelling and beat it elsewhere",
            Measure("mean(gru, mut1, mut2, mut3) - lstm", ("lstm",) + MUTANTS,
                    lambda s: _mean(s, MUTANTS) - s["lstm"]),
            (("spread", Measure("max - min of (gru, mut1, mut2, mut3)", MUTANTS,
                                lambda s: np.ptp([s[a] for a in MUTANTS], axis=0))),)),
)


def verdict(interval: list[float]) -> bool | None:
    """True if the interval lies above 0, False if below, None if it holds 0."""
    low, high = interval
    return True if low > 0 else False if high < 0 else None


def _by_task(scores: dict[Key, np.ndarray], tasks: list[str]) -> dict[str, Scores]:
    return {t: {a: v for (task, a), v in scores.items() if task == t} for t in tasks}


def _estimate(point: np.ndarray, boot: np.ndarray) -> dict:
    """The value on all trials, and the percentile interval of the resampled
    values over the resamples in which every cell used has a score."""
    kept = boot[np.isfinite(boot)]
    tail = 100 * (1 - LEVEL) / 2
    interval = (None if kept.size == 0 else
                [float(x) for x in np.percentile(kept, [tail, 100 - tail])])
    return {"statistic": float(point[0]), "interval": interval,
            "dropped": int(boot.size - kept.size)}


def _per_task(finding: Finding, point: dict[str, Scores], draws: dict[str, Scores]) -> dict:
    """Each task's d_t (and extras) with its interval, and the scores behind it."""
    measures = (("statistic", finding.statistic),) + finding.extras
    return {t: {**{name: _estimate(m.per_task(point[t]), m.per_task(draws[t]))
                   for name, m in measures},
                "scores": {a: float(point[t][a][0]) for a in finding.statistic.archs}}
            for t in point}


def _paper_statistic(measure: Measure, tasks: list[str]) -> float | None:
    """The measure on the paper's Table 2 (None where it lacks a value)."""
    table = {t: {a: np.array([paper.comparable(t, a)]) for a in measure.archs} for t in tasks}
    if any(v[0] is None for s in table.values() for v in s.values()):
        return None
    return float(measure(table)[0])


def assess(finding: Finding, tasks: list[str], point: dict[Key, np.ndarray],
           draws: dict[Key, np.ndarray]) -> dict:
    """One finding's statistic, interval and verdict (JSON-ready)."""
    needed = finding.statistic.archs
    skipped = {t: "no finished trial of " + ", ".join(a for a in needed if (t, a) not in point)
               for t in tasks if any((t, a) not in point for a in needed)}
    usable = [t for t in tasks if t not in skipped]
    out = {"finding": finding.name, "claim": finding.claim, "paper": finding.paper,
           "formula": f"mean over tasks of [{finding.statistic.formula}]", "tasks": usable,
           "skipped": skipped}
    if not usable:
        reason = "; ".join(f"{t}: {why}" for t, why in skipped.items()) or "no arithmetic or xml"
        return {**out, "supported": None, "verdict": "no verdict", "reason": reason,
                "statistic": None, "interval": None}
    point_by_task, draws_by_task = _by_task(point, usable), _by_task(draws, usable)
    est = _estimate(finding.statistic(point_by_task), finding.statistic(draws_by_task))
    supported = None if est["interval"] is None else verdict(est["interval"])
    out.update(est, supported=supported, verdict=VERDICTS[supported],
               resamples=int(next(iter(draws.values())).size),
               paper_statistic=_paper_statistic(finding.statistic, usable))
    if est["interval"] is None:
        out["reason"] = "every resample lacked a score of some cell"
    out["extras"] = {name: {"formula": f"mean over tasks of [{m.formula}]",
                            **_estimate(m(point_by_task), m(draws_by_task))}
                     for name, m in finding.extras}
    out["per_task"] = _per_task(finding, point_by_task, draws_by_task)
    return out


def evaluate(records: list[dict], resamples: int = RESAMPLES, seed: int = SEED) -> list[dict]:
    """Every finding assessed on the records' arithmetic and xml trials."""
    every = cells(records)
    tasks = [t for t in TASKS if any(task == t for task, _ in every)]
    archs = {a for f in FINDINGS for a in f.statistic.archs}
    used = {k: c for k, c in every.items() if k[0] in tasks and k[1] in archs
            and np.isfinite(score(c))}
    point = {k: np.array([score(c)]) for k, c in used.items()}
    draws, scheme = resample_scores(used, resamples, seed) if used else ({}, "none")
    return [{**assess(f, tasks, point, draws), "bootstrap": scheme} for f in FINDINGS]


def _number(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3f}"


def _interval(interval: list[float] | None) -> str:
    return "[—]" if interval is None else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def describe(result: dict) -> str:
    """A finding's result as a short paragraph of text."""
    lines = [f"({result['finding']}) {result['claim']} — {result['verdict']}",
             f"    the paper: {result['paper']}"]
    if result.get("reason"):
        lines.append(f"    {result['reason']}")
    if result["statistic"] is not None:
        dropped = f", {result['dropped']} resamples dropped" if result["dropped"] else ""
        lines.append(f"    {result['formula']} = {_number(result['statistic'])}, 95% "
                     f"{_interval(result['interval'])} ({result['bootstrap']} bootstrap, "
                     f"{result['resamples']} resamples{dropped}); from the paper's Table 2: "
                     f"{_number(result['paper_statistic'])}")
        for name, extra in result["extras"].items():
            lines.append(f"    {name}: {extra['formula']} = {_number(extra['statistic'])}, "
                         f"95% {_interval(extra['interval'])}")
        for task, numbers in result["per_task"].items():
            values = "; ".join(f"{'' if name == 'statistic' else name + ' '}"
                               f"{_number(numbers[name]['statistic'])} "
                               f"{_interval(numbers[name]['interval'])}"
                               for name in ("statistic", *result["extras"]))
            scores = ", ".join(f"{a} {v:.3f}" for a, v in numbers["scores"].items())
            lines.append(f"    {task}: {values} ({scores})")
    if result["tasks"]:  # else the reason above names the skipped tasks
        lines += [f"    {task} skipped: {why}" for task, why in result["skipped"].items()]
    return "\n".join(lines)


def text(results: list[dict]) -> str:
    """Every finding's paragraph, under a heading that states the method."""
    head = ("Findings (score of a cell: test accuracy of its best trial on validation; "
            f"{LEVEL:.0%} bootstrap intervals over trials; see experiments/jozefowicz/"
            "findings.py):")
    return "\n".join([head, *map(describe, results)])
