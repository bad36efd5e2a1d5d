"""Save and restore a whole `TrainState` (or any pytree) atomically.

The state is serialised with `flax.serialization` (msgpack) together with a
JSON-able metadata dict, written to a temporary file in the same folder,
flushed to disk, then renamed over the target: a crash leaves either the old
checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, cast

from flax import serialization


def save(path: str | os.PathLike, state: Any, metadata: dict | None = None) -> None:
    payload = {"state": serialization.to_state_dict(state),
               "metadata": json.dumps(metadata or {})}
    data = serialization.msgpack_serialize(payload)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def restore(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Read a checkpoint written by `save` into the structure of `template`
    (a state of the same shapes, e.g. a freshly initialised one). Returns
    `(state, metadata)`."""
    with open(path, "rb") as f:
        payload = cast(dict[str, Any], serialization.msgpack_restore(f.read()))
    state = serialization.from_state_dict(template, payload["state"])
    return state, json.loads(payload["metadata"])
