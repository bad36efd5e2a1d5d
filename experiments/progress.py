"""A progress bar for long runs: tqdm when it is installed, else a plain line
every few percent (never a hard dependency of the library)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class ProgressBar(Protocol):
    """What `progress_bar` yields: advance by `n` (showing `postfix`), and
    write a line above the bar."""

    def update(self, n: int = 1, **postfix: Any) -> None: ...

    def write(self, line: str) -> None: ...


class _Plain:
    def __init__(self, total: int, initial: int, desc: str):
        self.total, self.n, self.desc, self.start = total, initial, desc, time.perf_counter()
        self.every = max(1, total // 20)

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        if self.n % self.every == 0 or self.n == self.total:
            extra = " ".join(f"{k}={v}" for k, v in postfix.items())
            print(f"{self.desc}: {self.n}/{self.total} "
                  f"({time.perf_counter() - self.start:.0f}s) {extra}", file=sys.stderr)

    def write(self, line: str) -> None:
        print(line, file=sys.stderr)


class _Tqdm:
    def __init__(self, bar):
        self.bar = bar

    def update(self, n: int = 1, **postfix) -> None:
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(n)

    def write(self, line: str) -> None:
        self.bar.write(line)


@contextmanager
def progress_bar(total: int, *, initial: int = 0, desc: str = "") -> Iterator[ProgressBar]:
    try:
        from tqdm import tqdm
    except ImportError:
        yield _Plain(total, initial, desc)
        return
    with tqdm(total=total, initial=initial, desc=desc, file=sys.stderr,
              mininterval=1.0, dynamic_ncols=True) as bar:
        yield _Tqdm(bar)
