"""An append-only results file that loses nothing: one JSON object per line.

* `append(record)` takes an exclusive `flock` on the file, ends a torn last
  line (a writer killed mid-line) with a newline so the new record starts on a
  line of its own, writes the record and a newline, flushes and `fsync`s,
  then releases the lock. Several processes may append to one file at once.
* Every line is strict JSON (RFC 8259). A non-finite number (`nan`, `inf`,
  `-inf`, e.g. the loss of a diverged trial) is written as `null`, and the
  record gains a `"nonfinite"` object naming each such field by its dotted
  path with the value it had: `{"metrics": {"valid_loss": null}, "nonfinite":
  {"metrics.valid_loss": "NaN"}}` ("NaN", "Infinity" or "-Infinity"). A reader
  that takes `null` as "no value" (a diverged trial) stays correct; a record
  without non-finite numbers is written unchanged.
* `read()` returns the valid records and a list of problems (line number and
  why) for lines that are not complete JSON objects: a torn line is reported
  and ignored, never fatal. A line with the non-standard tokens `NaN`,
  `Infinity` or `-Infinity` (as older recurrax versions wrote them) is read
  as if it had been written now (`null` plus `"nonfinite"`) and reported.
* A path that cannot hold the file (a folder, a path under a file, a folder
  without write permission) is a `ValueError` naming the path, from `append`
  and from `check_writable()`, which a command line calls before its first
  trial.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

NONFINITE = "nonfinite"
_TOKENS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _token(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


class _Constant:
    """A `NaN`/`Infinity` token met while reading an old line."""

    def __init__(self, token: str):
        self.token = token


def _clean(value: Any, path: str, found: dict[str, str]) -> Any:
    """`value` with every non-finite float replaced by None (its path and
    token added to `found`) and NumPy scalars made Python numbers; a
    `TypeError` naming the field for what JSON cannot hold."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
                k = str(k)  # as json.dumps writes it
            if not isinstance(k, str):
                raise TypeError(f"ResultsFile.append: record{_where(path)} has the key {k!r} of "
                                f"type {type(k).__name__}; keys must be strings")
            out[k] = _clean(v, f"{path}.{k}" if path else k, found)
        return out
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{path}.{i}" if path else str(i), found) for i, v in enumerate(value)]
    if isinstance(value, _Constant):
        found[path] = value.token
        return None
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_)):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            found[path] = _token(value)
            return None
        return value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    hint = ("; convert it with float(...) or .tolist()"
            if hasattr(value, "shape") or hasattr(value, "__float__") else "")
    raise TypeError(f"ResultsFile.append: record{_where(path)} is a {type(value).__name__}, "
                    f"which JSON cannot hold{hint}")


def _where(path: str) -> str:
    return f" field {path!r}" if path else ""


def _with_flags(record: dict[str, Any], found: dict[str, str]) -> dict[str, Any]:
    if not found:
        return record
    old = record.get(NONFINITE)
    if old is not None and not isinstance(old, dict):
        raise ValueError(f"ResultsFile.append: the record's key {NONFINITE!r} is reserved for "
                         f"the list of non-finite fields, and holds {old!r}")
    return {**record, NONFINITE: {**(old or {}), **found}}


class ResultsFile:
    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"ResultsFile: path must be a str or os.PathLike, got "
                            f"{type(path).__name__}")
        self.path = Path(path)
        if str(path) == "":
            raise ValueError("ResultsFile: path is empty")

    def check_writable(self) -> None:
        """A `ValueError` naming the path unless `append` can write it: it is a
        folder, lies under a file, or the file (or the nearest existing folder
        above it) is not writable. Creates nothing."""
        path = self.path
        if path.is_dir():
            raise ValueError(f"results file {path} is a directory; give a file path such as "
                             f"{path / 'results.jsonl'}")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise ValueError(f"results file {path}: {parent} is a file, not a folder, so the "
                             f"file cannot be created")
        if path.exists():
            if not os.access(path, os.W_OK):
                raise ValueError(f"results file {path} is not writable (permission denied)")
        elif not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"results file {path} cannot be created: the folder {parent} is "
                             f"not writable (permission denied)")

    def append(self, record: dict[str, Any]) -> None:
        """Append `record` (a dict of JSON values; NumPy scalars are made
        Python numbers, non-finite floats `null` listed under "nonfinite")."""
        self.extend([record], where="append")

    def extend(self, records: Iterable[dict[str, Any]], *, where: str = "extend") -> None:
        """Append `records` as one write and one fsync: every record is
        checked and serialised first, so a bad one writes nothing, and a batch
        (a search round, a stage's scores) reaches the disk whole or, if the
        process dies in the write, as a torn last line that `read` reports."""
        lines = [self._line(record, where) for record in records]
        if not lines:
            return
        self.check_writable()
        try:
            self._write(lines)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                             errno.EROFS):
                raise ValueError(f"results file {self.path} cannot be written: "
                                 f"{err.strerror}") from err
            raise OSError(err.errno, f"results file {self.path}: the record could not be "
                                     f"written: {err.strerror}") from err

    def _write(self, lines: list[str]) -> None:
        """Append serialised `lines` under the file's lock in one write and one
        fsync; a write that fails half-way (a full disk) is cut back, so no
        half batch is left. OS errors come out as they are."""
        data = "".join(line + "\n" for line in lines).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b", buffering=0) as f:  # closing releases the lock
            fd = f.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # isolate a torn line left by a killed writer
            try:
                written = 0
                while written < len(data):  # one call, unless the disk fills up
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)
                raise

    @staticmethod
    def _line(record: dict[str, Any], where: str) -> str:
        if not isinstance(record, dict):
            raise TypeError(f"ResultsFile.{where}: a record must be a dict, got "
                            f"{type(record).__name__}")
        found: dict[str, str] = {}
        line = json.dumps(_with_flags(_clean(record, "", found), found), sort_keys=True,
                          allow_nan=False)
        if "\n" in line:
            raise ValueError(f"ResultsFile.{where}: a record must serialise to one line")
        return line

    def read(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(records, problems). A missing file reads as no records; a path
        that is a folder is a `ValueError`."""
        if self.path.is_dir():
            raise ValueError(f"results file {self.path} is a directory, not a results file")
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
                record = json.loads(raw, parse_constant=_Constant)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                why = ("torn (no newline at the end of the file)" if torn else
                       f"not a complete JSON object, a torn or corrupt write ({err})")
                problems.append(f"{self.path}:{number}: {why}; ignored")
                continue
            found: dict[str, str] = {}
            try:
                record = _with_flags(_clean(record, "", found), found)
            except (TypeError, ValueError) as err:
                problems.append(f"{self.path}:{number}: {err}; ignored")
                continue
            if found:
                problems.append(f"{self.path}:{number}: non-standard JSON tokens (written by "
                                f"an older recurrax) at {sorted(found)}; read as null, listed "
                                f"under {NONFINITE!r}")
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
