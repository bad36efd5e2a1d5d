"""The scan benchmark's report: Markdown tables and plots from its JSON lines.

    python -m benchmarks.report results/bench/scan.jsonl [--run-id ID]

Writes `<stem>.md`, `<stem>_throughput.png` (tokens/s against batch, one line
per implementation), `<stem>_compile.png` (compile time against sequence
length, one line per unroll) and `<stem>_memory.png` (compiled memory of
forward+backward against length, with and without remat) next to the file,
and prints the Markdown. Without `--run-id` it reports the last run in the
file (several processes may share one run id, as benchmarks/gpu.sh does).
A later measurement of the same cell, implementation, pass, dtype and shape
replaces an earlier one.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from benchmarks.peers import FAMILIES, PASSES, is_recurrax
from recurrax.train.results import ResultsFile

SHAPE = ("B", "T", "D", "H")


def load(path, run_id: str | None = None) -> list[dict]:
    """The records of `run_id` (default: the last run id in the file); a torn
    line (a killed run) is ignored."""
    records, _ = ResultsFile(path).read()
    if run_id is None and records:
        run_id = records[-1].get("run_id")
    return [r for r in records if r.get("run_id") == run_id]


def _latest(records, kind, key):
    out = {}
    for r in records:
        if r.get("kind") == kind:
            out[key(r)] = r
    return list(out.values())


def _k(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def _impl_order(cell: str, impls) -> list[str]:
    known: tuple[str, ...] = FAMILIES[cell].impls if cell in FAMILIES else ()
    rank = {name: i for i, name in enumerate(known)}
    return sorted(impls, key=lambda i: (rank.get(i.split("+")[0], len(rank)), i))


def throughput_tables(records) -> list[str]:
    rows = _latest(records, "throughput",
                   lambda r: (r["cell"], r["impl"], r["pass"], r["dtype"], *map(r.get, SHAPE)))
    groups = defaultdict(list)
    for r in rows:
        groups[(r["cell"], r["pass"], r["dtype"])].append(r)
    out = []
    cells = list(FAMILIES) + sorted({c for c, _, _ in groups} - set(FAMILIES))
    for cell in cells:
        for pass_ in PASSES:
            for dtype in ("float32", "bfloat16"):
                group = groups.get((cell, pass_, dtype))
                if group:
                    out += _throughput_table(cell, pass_, dtype, group)
    return out


def _throughput_table(cell, pass_, dtype, group) -> list[str]:
    impls = _impl_order(cell, {r["impl"] for r in group})
    ours = [i for i in impls if is_recurrax(i)]
    peers = [i for i in impls if not is_recurrax(i) and i != "limit"]
    by_shape = defaultdict(dict)
    for r in group:
        by_shape[tuple(r[k] for k in SHAPE)][r["impl"]] = r
    head = ["B, T, D, H", *impls]
    for o in ours:
        head += [f"{o} / best peer", f"{o} / limit"]
    lines = [f"\n**{cell}, {pass_}, {dtype}** (tokens/s; ratios > 1: recurrax faster)\n",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for shape in sorted(by_shape):
        row = by_shape[shape]
        cells = [", ".join(map(str, shape))]
        cells += [_k(row[i]["tokens_per_s"]) if i in row else "–" for i in impls]
        for o in ours:
            if o not in row:
                cells += ["–", "–"]
                continue
            ratios = {p: row[o]["ratio_to"][p] for p in peers if p in row[o]["ratio_to"]}
            best = min(ratios, key=lambda p: ratios[p]) if ratios else None
            cells.append(f"{ratios[best]:.2f} ({best})" if best else "–")
            frac = row[o].get("fraction_of_limit")
            cells.append("–" if frac is None else f"{frac:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _unroll_key(label: str):
    return (label == "T", 0 if label == "T" else int(label))


def mb(n: int | None) -> str:
    """Bytes as MiB, three significant digits below 1000 MiB."""
    if n is None:
        return "–"
    return f"{n / 2**20:.3g}" if n < 1000 * 2**20 else f"{n / 2**20:.0f}"


def compile_table(records) -> list[str]:
    rows = _latest(records, "compile", lambda r: (r["cell"], r["T"], r["unroll_label"]))
    if not rows:
        return []
    labels = sorted({r["unroll_label"] for r in rows}, key=_unroll_key)
    r0 = rows[0]
    lines = [f"\n**Compile time** (lower + compile, seconds; {r0['cell']} forward+backward, "
             f"B={r0['B']}, D={r0['D']}, H={r0['H']}, {r0['dtype']})\n",
             "| T | " + " | ".join(f"unroll={u}" for u in labels) + " |",
             "|" + " --- |" * (len(labels) + 1)]
    table = {(r["T"], r["unroll_label"]): r["seconds"] for r in rows}
    for T in sorted({r["T"] for r in rows}):
        lines.append(f"| {T} | " + " | ".join(
            f"{table[(T, u)]:.2f}" if (T, u) in table else "–" for u in labels) + " |")
    return lines


def memory_table(records) -> list[str]:
    rows = _latest(records, "memory", lambda r: (r["cell"], r["T"], r["remat"]))
    if not rows:
        return []
    r0 = rows[0]
    lines = [f"\n**Memory of forward+backward** (MiB, temp + argument + output from "
             f"memory_analysis; {r0['cell']}, B={r0['B']}, D={r0['D']}, H={r0['H']}, "
             f"{r0['dtype']})\n",
             "| T | no remat | remat | no remat / remat | temp, no remat | temp, remat |",
             "| --- | --- | --- | --- | --- | --- |"]
    table = {(r["T"], r["remat"]): r for r in rows}
    for T in sorted({r["T"] for r in rows}):
        a, b = table.get((T, False), {}), table.get((T, True), {})
        ta, tb = a.get("total_bytes"), b.get("total_bytes")
        ratio = f"{ta / tb:.2f}" if ta and tb else "–"
        lines.append(f"| {T} | {mb(ta)} | {mb(tb)} | {ratio} | {mb(a.get('temp_bytes'))} | "
                     f"{mb(b.get('temp_bytes'))} |")
    return lines


def kernel_cost_table(records) -> list[str]:
    """First call (compile + one run) and compiled memory of the fused kernels
    beside recurrax's `lax.scan` and the peers, where a run timed the kernels."""
    rows = _latest(records, "throughput",
                   lambda r: (r["cell"], r["impl"], r["pass"], r["dtype"], *map(r.get, SHAPE)))
    groups = defaultdict(dict)
    for r in rows:
        groups[(r["cell"], r["pass"], r["dtype"], *map(r.get, SHAPE))][r["impl"]] = r
    groups = {k: v for k, v in groups.items() if any(i.endswith("-pallas") for i in v)}
    if not groups:
        return []
    lines = ["\n**First call (compile + one run, s) and compiled memory (MiB)**\n",
             "| cell, pass, dtype | B, T, D, H | implementation: first call / memory |",
             "| --- | --- | --- |"]
    for key in sorted(groups):
        impls = _impl_order(key[0], groups[key])
        cost = ", ".join(f"{i}: {groups[key][i].get('first_call_s', 0):.2f} / "
                         f"{mb(groups[key][i].get('memory_bytes'))}" for i in impls)
        lines.append(f"| {', '.join(key[:3])} | {', '.join(map(str, key[3:]))} | {cost} |")
    return lines


def skip_lines(records) -> list[str]:
    reasons = defaultdict(set)
    for r in records:
        if r.get("kind") == "skip":
            what = r.get("impl") or r.get("part", "")
            reasons[(what, r["reason"])].add(r.get("dtype", ""))
    if not reasons:
        return []
    lines = ["\n**Skipped**\n"]
    for (what, reason), dtypes in sorted(reasons.items()):
        lines.append(f"- {what} ({', '.join(sorted(d for d in dtypes if d)) or 'all'}): {reason}")
    return lines


def markdown(records) -> str:
    meta = next((r for r in records if r.get("kind") == "meta"), {})
    head = (f"## recurrax scan benchmark ({meta.get('device', '?')}, "
            f"jax {meta.get('versions', {}).get('jax', '?')})\n\n"
            "Tokens/s = batch × steps per second, median of interleaved rounds in one "
            "process. The limit is the same matmuls with the time dependency removed. "
            "Forward+backward = gradients for params and inputs.")
    body = (throughput_tables(records) + kernel_cost_table(records) + compile_table(records)
            + memory_table(records))
    return "\n".join([head, *body, *skip_lines(records)]) + "\n"


def plots(records, stem: Path) -> list[Path]:
    """Write the three plots that have data; return their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, draw in (("throughput", _plot_throughput), ("compile", _plot_compile),
                       ("memory", _plot_memory)):
        fig = draw(plt, records)
        if fig is not None:
            path = stem.with_name(f"{stem.name}_{name}.png")
            fig.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
    return written


def _plot_throughput(plt, records):
    """Tokens/s against batch, a line per implementation, one panel per cell,
    pass, dtype, H and T that was measured at several batch sizes (at most 8).
    A run without a batch sweep (--quick) gets one panel per cell, pass and
    dtype with its shapes as points, unjoined, labelled (B, T, D, H)."""
    rows = _latest(records, "throughput",
                   lambda r: (r["cell"], r["impl"], r["pass"], r["dtype"], *map(r.get, SHAPE)))
    panels = defaultdict(list)
    for r in rows:
        panels[(r["cell"], r["pass"], r["dtype"], f"H={r['H']}, T={r['T']}")].append(r)
    swept = {k: v for k, v in panels.items() if len({r["B"] for r in v}) > 1}
    if not swept:
        panels = defaultdict(list)
        for r in rows:
            panels[(r["cell"], r["pass"], r["dtype"], "shapes differ")].append(r)
        swept = panels
    keys = sorted(swept, key=lambda k: (list(FAMILIES).index(k[0]) if k[0] in FAMILIES else 99,
                                        k[2], k[1], k[3]))[:8]
    if not keys:
        return None
    names = list(dict.fromkeys(i for c in FAMILIES for i in _impl_order(
        c, {r["impl"] for r in rows if r["cell"] == c})))
    names += sorted({r["impl"] for r in rows} - set(names))
    colour = {n: plt.get_cmap("tab10" if len(names) <= 10 else "tab20")(i)
              for i, n in enumerate(names)}
    cols = min(2, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 4.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        joined = key[3] != "shapes differ"
        by_impl = defaultdict(list)
        for r in swept[key]:
            by_impl[r["impl"]].append((r["B"], r["tokens_per_s"]))
        for impl in _impl_order(key[0], by_impl):
            style = ("--" if impl == "limit" else "-") if joined else "none"
            ax.plot(*zip(*sorted(by_impl[impl]), strict=True), marker="o", label=impl,
                    color=colour[impl], linestyle=style)
        ax.set(xscale="log", yscale="log", xlabel="batch" if joined else "B, T, D, H",
               ylabel="tokens/s", title=f"{key[0]} {key[1]} {key[2]}, {key[3]}")
        _log_axes(ax, {r["B"] for r in swept[key]})
        if not joined:
            shapes = {r["B"]: ", ".join(str(r[k]) for k in SHAPE) for r in swept[key]}
            ax.set_xticks(sorted(shapes), [shapes[b] for b in sorted(shapes)], fontsize=8,
                          rotation=25, ha="right")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _log_axes(ax, xs) -> None:
    """Log-log axes with plain numbers: x ticks at the values measured, y at 1-2-5."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter, NullLocator

    ax.set_xticks(sorted(xs), [str(x) for x in sorted(xs)])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _plot_compile(plt, records):
    rows = _latest(records, "compile", lambda r: (r["cell"], r["T"], r["unroll_label"]))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    by_unroll = defaultdict(list)
    for r in rows:
        by_unroll[r["unroll_label"]].append((r["T"], r["seconds"]))
    for label in sorted(by_unroll, key=_unroll_key):
        ax.plot(*zip(*sorted(by_unroll[label]), strict=False), marker="o", label=f"unroll={label}")
    ax.set(xscale="log", yscale="log", xlabel="sequence length T",
           ylabel="lower + compile (s)", title="recurrax compile time, forward+backward")
    _log_axes(ax, {r["T"] for r in rows})
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _plot_memory(plt, records):
    rows = [r for r in _latest(records, "memory", lambda r: (r["cell"], r["T"], r["remat"]))
            if r.get("total_bytes")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for remat in (False, True):
        pts = sorted((r["T"], r["total_bytes"] / 2**20) for r in rows if r["remat"] == remat)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o",
                    label="remat=True" if remat else "remat=False")
    ax.set(xscale="log", yscale="log", xlabel="sequence length T",
           ylabel="temp + argument + output (MiB)",
           title="recurrax forward+backward memory (memory_analysis)")
    _log_axes(ax, {r["T"] for r in rows})
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def write(jsonl, run_id: str | None = None) -> tuple[str, list[Path]]:
    """Write `<stem>.md` and the plots next to `jsonl`; return the Markdown
    and the paths written."""
    jsonl = Path(jsonl)
    records = load(jsonl, run_id)
    text = markdown(records)
    stem = jsonl.with_suffix("")
    md = stem.with_suffix(".md")
    md.write_text(text)
    return text, [md, *plots(records, stem)]


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("jsonl")
    parser.add_argument("--run-id", default=None)
    args = parser.parse_args(argv)
    text, paths = write(args.jsonl, args.run_id)
    print(text)
    print("wrote " + ", ".join(map(str, paths)))
    return text


if __name__ == "__main__":
    main()
