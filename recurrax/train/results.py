"""An append-only results file that loses nothing: one JSON object per line.

* `append(record)` takes an exclusive `flock` on the file, ends a torn last
  line (a writer killed mid-line) with a newline so the new record starts on a
  line of its own, writes the record and a newline, flushes and `fsync`s,
  then releases the lock. Several processes may append to one file at once.
* `read()` returns the valid records and a list of problems (line number and
  why) for lines that are not complete JSON objects: a torn line is reported
  and ignored, never fatal.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class ResultsFile:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True)
        if "\n" in line:
            raise ValueError("ResultsFile.append: a record must serialise to one line")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0, os.SEEK_END)
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")  # isolate a torn line left by a killed writer
                f.write(line.encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def read(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(records, problems)."""
        if not self.path.exists():
            return [], []
        records, problems = [], []
        with open(self.path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            try:
                data = f.read()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            torn = number == len(lines)  # the last piece had no newline after it
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                why = ("torn (no newline at the end of the file)" if torn else
                       f"not a complete JSON object, a torn or corrupt write ({err})")
                problems.append(f"{self.path}:{number}: {why}; ignored")
                continue
            if torn:
                problems.append(f"{self.path}:{number}: complete JSON without a final "
                                f"newline; kept")
            records.append(record)
        return records, problems

    def done(self, key: Callable[[dict], Any]) -> set:
        """The keys of the records already written (to skip finished work)."""
        return {key(r) for r in self.read()[0]}


def unique(records: Iterable[dict], key: Callable[[dict], Any]) -> list[dict]:
    """The first record of each key (two processes may both finish one trial)."""
    seen, out = set(), []
    for r in records:
        k = key(r)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out
