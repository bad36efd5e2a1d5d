"""The results table: the best trial per architecture per task (chosen on
validation, its test score reported), and a plot of every trial's spread.

The paper's published numbers (Table 2 of Jozefowicz et al. 2015) are not
transcribed here yet: the source text was not available to this project, and a
column typed from memory would be a guess. `PAPER_TABLE` is where they go.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from recurrax.results import ResultsFile, unique

PAPER_TABLE: dict[tuple[str, str], float] = {}  # (task, arch) -> published value; see above
COLUMNS = {"arithmetic": "accuracy", "xml": "accuracy", "words": "perplexity",
           "music": "nll_per_step"}
HIGHER = {"accuracy": True, "perplexity": False, "nll_per_step": False}


def best_per_cell(records: list[dict]) -> dict[tuple[str, str], dict]:
    best: dict[tuple[str, str], dict] = {}
    for r in records:
        metric = COLUMNS[r["task"]]
        value = r["metrics"].get(f"valid_{metric}")
        if value is None:
            continue
        key = (r["task"], r["arch"])
        old = best.get(key)
        better = old is None or (value > old["metrics"][f"valid_{metric}"]
                                 if HIGHER[metric] else value < old["metrics"][f"valid_{metric}"])
        if better:
            best[key] = r
    return best


def markdown(records: list[dict]) -> str:
    records = unique(records, key=lambda r: r["key"])
    tasks = [t for t in COLUMNS if any(r["task"] == t for r in records)]
    archs = list(dict.fromkeys(r["arch"] for r in records))
    best = best_per_cell(records)
    counts = defaultdict(lambda: [0, 0])
    for r in records:
        counts[(r["task"], r["arch"])][0] += 1
        counts[(r["task"], r["arch"])][1] += r["diverged"]
    head = "| arch | " + " | ".join(f"{t} test {COLUMNS[t]} (paper)" for t in tasks) + " |"
    lines = [head, "| --- |" + " --- |" * len(tasks)]
    for a in archs:
        cells = []
        for t in tasks:
            r = best.get((t, a))
            paper = PAPER_TABLE.get((t, a))
            ours = "—" if r is None else f"{r['metrics'][f'test_{COLUMNS[t]}']:.4g}"
            n, bad = counts[(t, a)]
            cells.append(f"{ours} ({'n/a' if paper is None else paper}) [{n} trials"
                         f"{f', {bad} diverged' if bad else ''}]")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    records = unique(records, key=lambda r: r["key"])
    tasks = [t for t in COLUMNS if any(r["task"] == t for r in records)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        archs = list(dict.fromkeys(r["arch"] for r in records if r["task"] == t))
        for i, a in enumerate(archs):
            ys = [r["metrics"][f"test_{COLUMNS[t]}"] for r in records
                  if r["task"] == t and r["arch"] == a and not r["diverged"]]
            ax.scatter([i] * len(ys), ys, s=12, alpha=0.7)
        ax.set_xticks(range(len(archs)), archs, rotation=60)
        ax.set(title=t, ylabel=f"test {COLUMNS[t]}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(path: str | Path) -> str:
    records, problems = ResultsFile(path).read()
    for p in problems:
        print(p)
    if not records:
        raise SystemExit(f"{path}: no finished trials yet")
    table = markdown(records)
    plot(records, Path(path).with_suffix(".png"))
    return table
