"""What every experiment's command line and figures share: a named preset
whose every setting can be overridden (`--hidden 64`, `--no-flag` for
booleans), `--seed`, `--out` and `--cache-dir`; matplotlib without a
display, and the plot of a training history."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def preset_parser(doc: str | None, presets: dict[str, dict], *, default: str = "quick",
                  cache_dir: bool = True) -> argparse.ArgumentParser:
    """A parser with `--preset` (one of `presets`), an override flag for every
    scalar setting of the `default` preset (lists are left to the caller),
    `--seed`, `--out` and, with `cache_dir`, `--cache-dir`; the description is
    the first line of `doc` (a module's docstring)."""
    parser = argparse.ArgumentParser(description=(doc or "").partition("\n")[0])
    parser.add_argument("--preset", choices=sorted(presets), default=default)
    for name, value in presets[default].items():
        if isinstance(value, (list, tuple)):
            continue
        kind: dict[str, Any] = (dict(action=argparse.BooleanOptionalAction)
                                if isinstance(value, bool) else dict(type=type(value)))
        parser.add_argument(f"--{name.replace('_', '-')}", **kind, default=None,
                            help=f"override the preset's {name}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where results are written")
    if cache_dir:
        parser.add_argument("--cache-dir", type=Path, default=None,
                            help="where downloaded data is cached")
    return parser


def preset_config(args: argparse.Namespace, presets: dict[str, dict], **extra) -> dict:
    """The chosen preset, with `seed` and `extra`, updated by every flag given."""
    config = dict(presets[args.preset], seed=args.seed, **extra)
    config.update({k: v for k, v in vars(args).items() if k in config and v is not None})
    return config


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Lay out, write and close `fig`."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def plot_history(ax, history: list[dict], metric: str, **settings) -> None:
    """Draw a training history's `train_<metric>` (a running mean) and
    `valid_<metric>` (dots) against the step on `ax`; `settings` go to `ax.set`."""
    steps = [h["step"] for h in history]
    ax.plot(steps, [h[f"train_{metric}"] for h in history], label="train (running mean)")
    ax.plot(steps, [h[f"valid_{metric}"] for h in history], marker="o", label="valid")
    ax.set(xlabel="step", **settings)


def history_figure(history: list[dict], metric: str, path: Path, *,
                   baseline: tuple[float, str] | None = None, **settings) -> None:
    """A figure of `plot_history` alone, with `baseline` = (value, label) as a
    dashed line, written to `path`."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    plot_history(ax, history, metric, **settings)
    if baseline is not None:
        ax.axhline(baseline[0], color="gray", linestyle="--", label=baseline[1])
    ax.legend()
    save_figure(fig, path)
