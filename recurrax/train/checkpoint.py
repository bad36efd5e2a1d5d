"""Save and restore a whole `TrainState` (or any pytree) atomically, and only
ever exactly.

A checkpoint file is a header and a payload:

    recurrax-checkpoint\\n
    {"version": 1, "payload_bytes": N, "sha256": "<hex digest of the payload>"}\\n
    <payload: N bytes of msgpack, {"state": flax state dict, "metadata": JSON text}>

`save` serialises the state with `flax.serialization` (msgpack) together with
a JSON-able metadata dict, writes header and payload to a temporary file in
the same folder, flushes it to disk, renames it over the target and syncs the
folder: a crash (even `SIGKILL`) leaves either the old checkpoint or the new
one, never half of one (a killed `save` may leave a `.ckpt-*.tmp` file beside
it, which is never read).

`restore` refuses, with a `ValueError` naming the file, a file that is not a
checkpoint, a truncated one (fewer payload bytes than the header says) and a
corrupt one (the payload's SHA-256 differs from the header's): it never loads
changed weights. Files written by recurrax before checksums (a bare msgpack
payload, no header) cannot be verified and are refused too, with a message
saying so. The restored state must fit the `template` exactly: the same tree
structure, and for every array the same shape and dtype; the first leaf that
differs is named by its path in the state dict (`params/W_xi`,
`opt_state/1/count`, ...) with both shapes or dtypes. `metadata(path)` reads
(and verifies) the metadata alone, to check a run's settings before its state.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from jax.core import Tracer

MAGIC = b"recurrax-checkpoint\n"
VERSION = 1
_SCALARS = (bool, int, float, str, bytes, type(None))


def _describe(leaf: Any) -> str:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return f"an array of shape {tuple(np.shape(leaf))} and dtype {np.dtype(leaf.dtype)}"
    if isinstance(leaf, dict):
        return f"a subtree with keys {sorted(map(str, leaf))}"
    return f"a {type(leaf).__name__} {leaf!r}"


def _check_savable(tree: Any, path: str = "") -> None:
    """Every leaf of a state dict must be something msgpack can store."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            _check_savable(value, f"{path}/{key}" if path else str(key))
        return
    where = path or "(the root)"
    if isinstance(tree, Tracer):
        raise TypeError(f"checkpoint.save: state leaf {where} is a traced value; call save "
                        f"outside jit/vmap/grad, on concrete arrays")
    if isinstance(tree, jax.Array) and jnp.issubdtype(tree.dtype, jax.dtypes.prng_key):
        raise TypeError(f"checkpoint.save: state leaf {where} is a typed PRNG key array "
                        f"({tree.dtype}); store jax.random.key_data(key) instead (TrainState "
                        f"keeps a raw uint32[2] key for this reason)")
    if isinstance(tree, (np.ndarray, np.generic, jax.Array)):
        if np.dtype(tree.dtype) == np.dtype(object):
            raise TypeError(f"checkpoint.save: state leaf {where} is an array of Python "
                            f"objects; only numeric arrays can be saved")
        return
    if isinstance(tree, _SCALARS + (complex,)):
        return
    raise TypeError(f"checkpoint.save: state leaf {where} is a {type(tree).__name__}, which "
                    f"a checkpoint cannot store; the state must be a pytree of arrays, "
                    f"numbers, strings and None")


def _first_non_json(value: Any, path: str = "metadata") -> str | None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                return f"{path} has a key of type {type(k).__name__}"
            found = _first_non_json(v, f"{path}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _first_non_json(v, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return None
    return f"{path} is a {type(value).__name__}"


def _check_target(path: str) -> None:
    if os.path.isdir(path):
        raise ValueError(f"checkpoint: path {path} is a directory; give a file path such as "
                         f"{os.path.join(path, 'checkpoint.msgpack')}")
    folder = os.path.dirname(os.path.abspath(path))
    parent = folder
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"checkpoint: cannot write {path}: {parent} is a file, not a folder")


def save(path: str | os.PathLike, state: Any, metadata: dict | None = None) -> None:
    """Write `state` (any pytree of arrays, numbers, strings and None) and
    `metadata` (a JSON-able dict; Python's `inf`/`nan` round-trip) to `path`,
    atomically. Everything is checked before anything is written: a
    `TypeError` for metadata that is not a JSON-able dict or a leaf that cannot
    be stored (a traced value, a typed PRNG key, an arbitrary object), a
    `ValueError` for a path that is a folder or lies under a file."""
    path = os.fspath(path)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"checkpoint.save: metadata must be a dict (or None), got "
                        f"{type(metadata).__name__}")
    bad = _first_non_json(metadata or {})
    if bad:
        raise TypeError(f"checkpoint.save: metadata must be JSON-able (dicts, lists, strings, "
                        f"numbers, bools, None): {bad}")
    state_dict = serialization.to_state_dict(state)
    _check_savable(state_dict)
    _check_target(path)
    payload = serialization.msgpack_serialize(
        {"state": state_dict, "metadata": json.dumps(metadata or {})})
    header = json.dumps({"version": VERSION, "payload_bytes": len(payload),
                         "sha256": hashlib.sha256(payload).hexdigest()}).encode() + b"\n"
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"checkpoint.save: cannot create the folder {folder} for "
                                 f"{path}: {err.strerror}") from err
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + header + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _read_payload(path: str) -> bytes:
    """The verified payload of the checkpoint at `path`."""
    if os.path.isdir(path):
        raise ValueError(f"checkpoint.restore: {path} is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint.restore: no checkpoint at {path} "
                                f"(the file does not exist)") from None
    if not data:
        raise ValueError(f"checkpoint.restore: {path} is empty (0 bytes), not a checkpoint; "
                         f"delete it to start afresh")
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise ValueError(f"checkpoint.restore: {path} is truncated ({len(data)} bytes, "
                             f"cut inside the header); refused")
        try:
            old = serialization.msgpack_restore(data)
        except Exception:
            old = None
        if isinstance(old, dict) and set(old) == {"state", "metadata"}:
            raise ValueError(f"checkpoint.restore: {path} was written by an older recurrax, "
                             f"without a checksum, so it cannot be verified and is refused; "
                             f"delete it and train again (the format now carries a SHA-256)")
        raise ValueError(f"checkpoint.restore: {path} is not a recurrax checkpoint (it does "
                         f"not start with {MAGIC!r})")
    end = data.find(b"\n", len(MAGIC))
    try:
        if end < 0:
            raise ValueError("no end of line")
        header = json.loads(data[len(MAGIC):end])
        version, size, digest = header["version"], header["payload_bytes"], header["sha256"]
    except (ValueError, KeyError, TypeError):
        if end < 0:
            raise ValueError(f"checkpoint.restore: {path} is truncated ({len(data)} bytes, "
                             f"cut inside the header); refused") from None
        raise ValueError(f"checkpoint.restore: {path} has a damaged header; refused") from None
    if version != VERSION:
        raise ValueError(f"checkpoint.restore: {path} has format version {version!r}; this "
                         f"recurrax reads version {VERSION}")
    payload = data[end + 1:]
    if len(payload) < size:
        raise ValueError(f"checkpoint.restore: {path} is truncated: its header announces "
                         f"{size} payload bytes, the file holds {len(payload)}; refused")
    if len(payload) > size:
        raise ValueError(f"checkpoint.restore: {path} is corrupt: {len(payload) - size} bytes "
                         f"beyond the {size} payload bytes its header announces; refused")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ValueError(f"checkpoint.restore: {path} is corrupt: the SHA-256 of its payload "
                         f"does not match the one in its header; refused")
    return payload


def _compare(template: Any, saved: Any, path: str, file: str) -> None:
    """`ValueError` at the first leaf (in the template's order) where `saved`
    does not fit `template`."""
    where = path or "(the root)"
    intro = f"checkpoint.restore: {file} does not fit the template at {where}"
    if isinstance(template, dict):
        if not isinstance(saved, dict):
            raise ValueError(f"{intro}: the template has {_describe(template)}, the checkpoint "
                             f"{_describe(saved)}")
        for key in template:
            if str(key) not in saved:
                raise ValueError(f"{intro}: the template has the entry {key!r}, the "
                                 f"checkpoint does not (its keys: {sorted(saved)})")
            _compare(template[key], saved[str(key)], f"{path}/{key}" if path else str(key), file)
        extra = sorted(set(saved) - {str(k) for k in template})
        if extra:
            raise ValueError(f"{intro}: the checkpoint has the entries {extra}, the template "
                             f"does not (its keys: {sorted(map(str, template))})")
        return
    t_array = hasattr(template, "shape") and hasattr(template, "dtype")
    s_array = hasattr(saved, "shape") and hasattr(saved, "dtype")
    if t_array and s_array:
        t_shape, s_shape = tuple(np.shape(template)), tuple(np.shape(saved))
        if t_shape != s_shape:
            raise ValueError(f"{intro}: the checkpoint has shape {s_shape}, the template "
                             f"{t_shape}")
        if np.dtype(template.dtype) != np.dtype(saved.dtype):
            raise ValueError(f"{intro}: the checkpoint has dtype {np.dtype(saved.dtype)}, the "
                             f"template {np.dtype(template.dtype)}")
        return
    if t_array or s_array or isinstance(saved, dict) or type(template) is not type(saved):
        raise ValueError(f"{intro}: the template has {_describe(template)}, the checkpoint "
                         f"{_describe(saved)}")


def restore(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Read a checkpoint written by `save` into the structure of `template`
    (a state of the same shapes and dtypes, e.g. a freshly initialised one;
    `jax.ShapeDtypeStruct` leaves will do). Returns `(state, metadata)`.

    `FileNotFoundError` when `path` does not exist; `ValueError`, naming the
    file, when it is no checkpoint, is truncated or corrupt (checksum), was
    written without a checksum by an older recurrax, or does not fit the
    template (the first differing leaf, with both shapes, dtypes or
    structures). Nothing is returned unless every check passes."""
    file = os.fspath(path)
    payload = serialization.msgpack_restore(_read_payload(file))
    if not isinstance(payload, dict) or set(payload) != {"state", "metadata"}:
        raise ValueError(f"checkpoint.restore: {file} holds no state and metadata")
    _compare(serialization.to_state_dict(template), payload["state"], "", file)
    state = serialization.from_state_dict(template, payload["state"])
    return state, json.loads(payload["metadata"])


def metadata(path: str | os.PathLike) -> dict:
    """The metadata of the checkpoint at `path`, verified as `restore` does
    but without a template: read it first to check that a checkpoint belongs
    to the run at hand (its settings) before restoring the state into that
    run's template."""
    file = os.fspath(path)
    payload = serialization.msgpack_restore(_read_payload(file))
    if not isinstance(payload, dict) or set(payload) != {"state", "metadata"}:
        raise ValueError(f"checkpoint.metadata: {file} holds no state and metadata")
    return json.loads(payload["metadata"])
