"""What every experiment's command line and figures share: a named preset
whose every setting can be overridden (`--hidden 64`, `--no-flag` for
booleans), each override checked against its range (`Range`) before
anything loads; `--seed`, `--out` and `--cache-dir`, checked writable
(`path_problem`); a results file that keeps what it could not write and
tries again (`DurableResults`); matplotlib without a display, and the plot of
a training history."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from recurrax.train.results import ResultsFile


class Range:
    """The numbers an option accepts: `kind` (int or float), finite, at least
    `low` (above it with `open_low`), at most `high` (below it with
    `open_high`), or one of `also` (e.g. 0 meaning "off").

    As an argparse `type`, a value outside it is refused with
    `argument --name: expected <describe()>, got '<value>'` (exit status 2);
    `check(name, value)` refuses a value already parsed with a `ValueError`."""

    def __init__(self, kind: type = int, low: float | None = None, high: float | None = None,
                 *, open_low: bool = False, open_high: bool = False,
                 also: tuple[float, ...] = (), also_text: str = ""):
        self.kind, self.low, self.high = kind, low, high
        self.open_low, self.open_high = open_low, open_high
        self.also, self.also_text = also, also_text
        self.__name__ = kind.__name__  # argparse names the type in some messages

    def describe(self) -> str:
        noun = "an int" if self.kind is int else "a number"
        show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
        if self.low is not None and self.high is not None:
            text = (f"{noun} in {'(' if self.open_low else '['}{show(self.low)}, "
                    f"{show(self.high)}{')' if self.open_high else ']'}")
        elif self.low is not None:
            text = f"{noun} {'>' if self.open_low else '>='} {show(self.low)}"
        elif self.high is not None:
            text = f"{noun} {'<' if self.open_high else '<='} {show(self.high)}"
        else:
            text = f"a finite {'int' if self.kind is int else 'number'}"
        return f"{self.also_text} or {text}" if self.also_text else text

    def accepts(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if value in self.also:
            return True
        if not math.isfinite(value):
            return False
        low_ok = self.low is None or (value > self.low if self.open_low else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.open_high
                                        else value <= self.high)
        return low_ok and high_ok

    def check(self, name: str, value: Any) -> Any:
        """`value` if it is in the range, else `ValueError` naming `name`."""
        if not self.accepts(value):
            raise ValueError(f"{name}: expected {self.describe()}, got {value!r}")
        return value

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or not self.accepts(value):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        return value


COUNT = Range(int, 1)                                 # steps, sizes, batches, trials
NONNEGATIVE = Range(int, 0)                           # lengths that may be 0, patience
POSITIVE = Range(float, 0, open_low=True)             # learning rates, clip norms
NONNEGATIVE_REAL = Range(float, 0)                    # penalties, temperatures
FRACTION = Range(float, 0, 1, open_high=True)         # dropout rates
REAL = Range(float)                                   # any finite number
SEED = Range(int, 0, 2**32 - 1)                       # what numpy and jax.random both take
MIN_STALL_SECONDS = 5.0
#: the stall watchdog's period: 0 turns it off; below a few seconds a busy
#: (not wedged) process would be restarted
STALL_SECONDS = Range(float, MIN_STALL_SECONDS, also=(0.0,), also_text="0 (off)")


def _default_range(value: Any) -> Range | None:
    """An int setting counts something (>= 1); a float one is a rate or a scale (> 0)."""
    if isinstance(value, bool):
        return None
    return COUNT if isinstance(value, int) else POSITIVE if isinstance(value, float) else None


def preset_parser(doc: str | None, presets: dict[str, dict], *, default: str = "quick",
                  cache_dir: bool = True,
                  ranges: Mapping[str, Range | Sequence[str]] | None = None
                  ) -> argparse.ArgumentParser:
    """A parser with `--preset` (one of `presets`), an override flag for every
    scalar setting of the `default` preset (lists are left to the caller),
    `--seed`, `--out` and, with `cache_dir`, `--cache-dir`; the description is
    the first line of `doc` (a module's docstring). An override is checked
    against `ranges[name]`: a `Range`, or the strings it may be (choices);
    without an entry an int setting must be >= 1 and a float one > 0 (and
    finite)."""
    ranges = dict(ranges or {})
    parser = argparse.ArgumentParser(description=(doc or "").partition("\n")[0])
    parser.add_argument("--preset", choices=sorted(presets), default=default)
    for name, value in presets[default].items():
        if isinstance(value, (list, tuple)):
            continue
        spec = ranges.get(name, _default_range(value))
        kind: dict[str, Any] = dict(help=f"override the preset's {name}")
        if isinstance(value, bool):
            kind.update(action=argparse.BooleanOptionalAction)
        elif isinstance(spec, Range):
            kind.update(type=spec, help=f"override the preset's {name} ({spec.describe()})")
        elif spec is not None:
            kind.update(type=type(value), choices=list(spec))
        else:
            kind.update(type=type(value))
        parser.add_argument(f"--{name.replace('_', '-')}", **kind, default=None)
    parser.add_argument("--seed", type=SEED, default=0, help=f"({SEED.describe()})")
    parser.add_argument("--out", type=Path, default=None, help="where results are written")
    if cache_dir:
        parser.add_argument("--cache-dir", type=Path, default=None,
                            help="where downloaded data is cached (default: $RECURRAX_CACHE, "
                                 "else ~/.cache/recurrax)")
    return parser


def preset_config(args: argparse.Namespace, presets: dict[str, dict], **extra) -> dict:
    """The chosen preset, with `seed` and `extra`, updated by every flag given."""
    config = dict(presets[args.preset], seed=args.seed, **extra)
    config.update({k: v for k, v in vars(args).items() if k in config and v is not None})
    return config


def path_problem(path: str | os.PathLike, *, directory: bool) -> str | None:
    """Why `path` could not be written, or None: with `directory`, a folder
    files are written into; else a file appended to. It may not exist yet; then
    its nearest existing ancestor must be a writable directory. Nothing is
    created or written."""
    path = Path(path).expanduser()
    what = "a directory" if directory else "a file"
    if path.exists():
        if directory and not path.is_dir():
            return f"{path} exists and is not a directory; expected {what}"
        if not directory and path.is_dir():
            return (f"{path} is a directory; expected {what} "
                    f"(e.g. {path / 'results.jsonl'})")
        if not directory and not path.is_file():
            return f"{path} is not a regular file; expected {what}"
        if not os.access(path, os.W_OK | (os.X_OK if directory else 0)):
            return f"{path} is not writable (check its permissions)"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{path} cannot be created: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {parent} is not writable (check its permissions)"
    return None


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace, *,
                cache: bool = True) -> None:
    """`parser.error` (exit status 2) unless `args.out` (a folder) and, with
    `cache`, `args.cache_dir` (if the parser has it: the folder, else
    $RECURRAX_CACHE or the default) can be written; the cache folder is created."""
    if (problem := path_problem(args.out, directory=True)) is not None:
        parser.error(f"argument --out: {problem}")
    if cache and hasattr(args, "cache_dir"):
        from recurrax.tasks.cache import CacheError, cache_root
        try:
            cache_root(args.cache_dir)
        except CacheError as err:
            parser.error(str(err))


class DurableResults(ResultsFile):
    """A `ResultsFile` whose records are never computed and then dropped.

    An append that fails (`OSError`: disk full, permissions changed) keeps
    the records in memory, says so on stderr and tries again after `wait`
    seconds, doubling up to `max_wait`; after `give_up` seconds it prints the
    records it holds to stderr (one JSON line each, to be appended by hand) and
    raises the last error.

    With `batched`, appends are held until the next `read` (or `flush`) and
    then written in one `write` call, under the file's lock, with one `fsync`
    (the file is cut back to its old size if that write fails half-way): a
    process killed at any point leaves every batch in the file whole or not
    at all. The search (`recurrax.search.run`) reads its log after each round
    and each stage's scores, so its log always stops where an uninterrupted
    search decided what to do next, and a resumed search takes the same path.
    """

    def __init__(self, path: str | os.PathLike, *, batched: bool = False, wait: float = 1.0,
                 max_wait: float = 60.0, give_up: float = 3600.0,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(path)
        self.batched, self.wait, self.max_wait, self.give_up = batched, wait, max_wait, give_up
        self.sleep = sleep
        self.pending: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        if self.batched:
            json.dumps(record, allow_nan=False)  # refuse what cannot be written now, not later
            self.pending.append(record)
        else:
            self._retrying([record], lambda: super(DurableResults, self).append(record))

    def extend(self, records: Iterable[dict[str, Any]], *, where: str = "extend") -> None:
        records = list(records)
        if self.batched:
            for record in records:
                self.append(record)
        else:
            self._retrying(records, lambda: super(DurableResults, self).extend(records,
                                                                                where=where))

    def read(self) -> tuple[list[dict[str, Any]], list[str]]:
        self.flush()
        return super().read()

    def flush(self) -> None:
        """Write the records held back (batched) in one write."""
        if self.pending:
            held = list(self.pending)
            self._retrying(held, lambda: self._write_batch(held))
            self.pending.clear()

    def _retrying(self, records: list[dict[str, Any]], write: Callable[[], None]) -> None:
        delay, waited = self.wait, 0.0
        while True:
            try:
                write()
                return
            except OSError as err:
                if waited >= self.give_up:
                    print(f"giving up on {self.path} after {waited:.0f} s; the records not "
                          f"written follow, one JSON line each:", file=sys.stderr)
                    for r in records:
                        print(json.dumps(r, sort_keys=True), file=sys.stderr)
                    raise
                print(f"could not write {len(records)} record(s) to {self.path} ({err}); "
                      f"they are kept and written again in {delay:g} s (free disk space or "
                      f"fix the file's permissions)", file=sys.stderr, flush=True)
                self.sleep(delay)
                waited += delay
                delay = min(2 * delay, self.max_wait)

    def _write_batch(self, records: list[dict[str, Any]]) -> None:
        """The held records, one write and one fsync (`ResultsFile._write`,
        which cuts back a half-written batch); OS errors come out as they are,
        to be retried."""
        self._write([self._line(r, "append") for r in records])


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
