"""The results table, the paper's findings computed from it, and a plot.

The table holds, per architecture and task, the test value of the best trial
chosen on validation (`findings.best_of_n`), beside the paper's published
value where it is comparable (Arith. and XML accuracies, `paper.TABLE2`); the
words column shows the paper's PTB figure only as a labelled reference (our
text is Shakespeare, and that column's unit is not established); music has no
paper figure. Below it, the paper's four findings with bootstrap intervals and
verdicts (`findings`). `summary` gives the same as one JSON-ready object.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from experiments.jozefowicz import findings, paper
from experiments.jozefowicz.findings import COLUMNS
from recurrax.train.results import ResultsFile, unique


def _tasks(records: list[dict]) -> list[str]:
    return [t for t in COLUMNS if any(r["task"] == t for r in records)]


def _entry(task: str, arch: str, cell: findings.Cell) -> dict:
    """One cell of the table: ours, the paper's, and the counts of trials."""
    ours = findings.score(cell)
    entry = {"ours": None if math.isnan(ours) else ours, "paper": paper.comparable(task, arch),
             "trials": len(cell.trials), "diverged": cell.diverged}
    if (reference := paper.reference(task, arch)) is not None:
        entry["paper_reference"] = reference
    return entry


def table(records: list[dict]) -> list[dict]:
    """One row per architecture: per task (None where it has no trials),
    ours (the test value of the best trial on validation, None if no trial
    finished), the paper's comparable value, its PTB references (words only),
    and the numbers of trials and of diverged trials."""
    cells = findings.cells(records)
    tasks = _tasks(records)
    return [{"arch": arch, **{t: None if (t, arch) not in cells else
                              _entry(t, arch, cells[(t, arch)]) for t in tasks}}
            for arch in dict.fromkeys(r["arch"] for r in records)]


def _cell_text(entry: dict | None) -> str:
    """`0.612 (paper 0.896) [16 trials, 1 diverged]`, a PTB reference in the
    words column, or — where there are no trials."""
    if entry is None:
        return "—"
    ours = "—" if entry["ours"] is None else f"{entry['ours']:.4g}"
    ptb = (entry.get("paper_reference") or {}).get("ptb_table2")
    beside = (f" (paper {entry['paper']:#.3g})" if entry["paper"] is not None else
              f" (PTB ref. {ptb:#.3g})" if ptb is not None else "")  # 3 significant figures
    diverged = f", {entry['diverged']} diverged" if entry["diverged"] else ""
    return f"{ours}{beside} [{entry['trials']} trials{diverged}]"


def footnote(tasks: list[str]) -> str:
    """What the paper's figures are, and which are not comparable with ours."""
    notes = [f"paper: {paper.SOURCE} (rnn is the paper's Tanh)."]
    if paper.REFERENCE_TASK in tasks:
        dropout = ", ".join(f"{a} {v:g}" for a, v in paper.PTB_DROPOUT_PERPLEXITY.items())
        notes.append("PTB ref.: the same table's PTB column (values near 0.09; the sources do "
                     "not establish its unit), measured on Penn Treebank while our words task "
                     "is Shakespeare: a reference, not comparable. The paper's PTB test "
                     f"perplexities with dropout (20M parameters), also not comparable: "
                     f"{dropout}.")
    if "music" in tasks:
        notes.append("music: no paper figure in the sources.")
    return "\n".join(notes)


def markdown(records: list[dict]) -> str:
    """The table as Markdown, with its footnote."""
    records = unique(records, key=lambda r: r["key"])
    tasks = _tasks(records)
    lines = ["| arch | " + " | ".join(f"{t} test {COLUMNS[t]}" for t in tasks) + " |",
             "| --- |" + " --- |" * len(tasks)]
    for row in table(records):
        lines.append(f"| {row['arch']} | "
                     + " | ".join(_cell_text(row.get(t)) for t in tasks) + " |")
    return "\n".join(lines) + "\n\n" + footnote(tasks)


def summary(records: list[dict], resamples: int = findings.RESAMPLES,
            seed: int = findings.SEED) -> dict:
    """The table and the findings as one JSON-ready object (no NaN: null)."""
    records = unique(records, key=lambda r: r["key"])
    return {"table": table(records), "footnote": footnote(_tasks(records)),
            "findings": findings.evaluate(records, resamples, seed)}


def plot(records: list[dict], path: Path) -> None:
    """Every trial's test score per cell (dots), the best trial on validation
    (a ring) and the paper's figure where it has one (a black bar)."""
    from experiments.cli import pyplot, save_figure
    plt = pyplot()
    records = unique(records, key=lambda r: r["key"])
    tasks, cells = _tasks(records), findings.cells(records)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, t in zip(axes[0], tasks, strict=False):
        archs = list(dict.fromkeys(r["arch"] for r in records if r["task"] == t))
        for i, a in enumerate(archs):
            ys = [r["metrics"][f"test_{COLUMNS[t]}"] for r in records
                  if r["task"] == t and r["arch"] == a and not r["diverged"]]
            ax.scatter([i] * len(ys), ys, s=12, alpha=0.7)
            ax.scatter([i], [findings.score(cells[(t, a)])], s=70, facecolors="none",
                       edgecolors="k", linewidths=0.8,
                       label="best on validation" if i == 0 else None)
            if paper.comparable(t, a) is not None:
                ax.scatter([i], [paper.comparable(t, a)], marker="_", s=250, c="k",
                           label="paper" if i == 0 else None)
        ax.set_xticks(range(len(archs)), archs, rotation=60)
        ax.set(title=t, ylabel=f"test {COLUMNS[t]}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower left")
    save_figure(fig, path)


#: What the table and the findings read of every finished trial.
FIELDS = ("key", "task", "arch", "trial", "metrics", "diverged")


def read(path: str | Path) -> list[dict]:
    """A results file's records; its problems (torn lines) go to stderr.
    `SystemExit` with a message when it has none, or when one lacks a field
    of `FIELDS` or has a task the table does not know."""
    records, problems = ResultsFile(path).read()
    for p in problems:
        print(p, file=sys.stderr)
    if not records:
        raise SystemExit(f"{path}: no finished trials yet")
    for n, r in enumerate(records, start=1):
        missing = [f for f in FIELDS if f not in r]
        if missing or r["task"] not in COLUMNS or not isinstance(r["metrics"], dict):
            why = (f"lacks {missing}" if missing else f"has task {r['task']!r}"
                   if r["task"] not in COLUMNS else "has metrics that are no JSON object")
            raise SystemExit(f"{path}: record {n} ({r.get('key', 'no key')!r}) {why}; "
                             f"a finished trial has {', '.join(FIELDS)} (task one of "
                             f"{', '.join(COLUMNS)})")
    return records


def report(path: str | Path) -> str:
    """The table, its footnote and the findings as text; writes the plot
    beside the results file (where it cannot, says so on stderr and goes on)."""
    from experiments.cli import path_problem
    records = read(path)
    figure = Path(path).with_suffix(".png")
    if (problem := path_problem(figure, directory=False)) is None:
        plot(records, figure)
    else:
        print(f"no plot: {problem}", file=sys.stderr)
    return markdown(records) + "\n\n" + findings.text(findings.evaluate(records))


def report_json(path: str | Path) -> str:
    """`summary` of a results file as one line of JSON (strict: no NaN tokens)."""
    return json.dumps(summary(read(path)), allow_nan=False)
