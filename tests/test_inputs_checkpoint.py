"""Bad and edge inputs to `recurrax.train.checkpoint`: a checkpoint loads
exactly or not at all (issue 16)."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from recurrax import train
from recurrax.train import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _state(rows=3):
    params = {"w": jnp.arange(rows * 2, dtype=jnp.float32).reshape(rows, 2),
              "b": jnp.full((2,), 0.5, jnp.float32)}
    return train.create_train_state(params, train.make_optimizer(0.1, clip_norm=1.0),
                                    carry=(jnp.ones((2, 4)),), seed=3)


def _assert_same(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_exact_and_metadata_keeps_inf(tmp_path):
    path = tmp_path / "c.msgpack"
    state = _state()
    checkpoint.save(path, state, {"plateau": [float("inf"), 1.0, 0], "note": "x"})
    restored, meta = checkpoint.restore(path, _state()._replace(params=jax.tree.map(
        jnp.zeros_like, state.params)))
    _assert_same(restored, state)
    assert meta == {"plateau": [float("inf"), 1.0, 0], "note": "x"}
    assert os.listdir(tmp_path) == ["c.msgpack"]
    assert path.read_bytes().startswith(b"recurrax-checkpoint\n")


def test_an_abstract_template_will_do(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, _state())
    restored, meta = checkpoint.restore(path, jax.eval_shape(_state))
    _assert_same(restored, _state())
    assert meta == {}


def test_a_template_of_other_shapes_is_refused_naming_the_leaf_and_both_shapes(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, _state(rows=3))
    with pytest.raises(ValueError, match=r"at params/w: the checkpoint has shape \(3, 2\), "
                                         r"the template \(4, 2\)") as e:
        checkpoint.restore(path, _state(rows=4))
    assert str(path) in str(e.value)


def test_a_template_of_another_dtype_is_refused(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, {"w": np.zeros(3, np.float32), "n": np.int32(1)})
    with pytest.raises(ValueError, match="at w: the checkpoint has dtype float32, the "
                                         "template float16"):
        checkpoint.restore(path, {"w": np.zeros(3, np.float16), "n": np.int32(1)})
    with pytest.raises(ValueError, match="at n: the checkpoint has dtype int32, the template "
                                         "int64"):
        checkpoint.restore(path, {"w": np.zeros(3, np.float32), "n": np.int64(1)})


def test_a_template_of_another_structure_is_refused(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, {"a": np.zeros(2), "b": {"c": np.zeros(1)}})
    with pytest.raises(ValueError, match=r"at \(the root\): the checkpoint has the entries "
                                         r"\['b'\], the template does not"):
        checkpoint.restore(path, {"a": np.zeros(2)})
    with pytest.raises(ValueError, match="the template has the entry 'z', the checkpoint "
                                         "does not"):
        checkpoint.restore(path, {"a": np.zeros(2), "b": {"c": np.zeros(1)}, "z": np.zeros(1)})
    with pytest.raises(ValueError, match=r"at b: the template has an array of shape \(1,\)"
                                         r".*the checkpoint a subtree with keys \['c'\]"):
        checkpoint.restore(path, {"a": np.zeros(2), "b": np.zeros(1)})
    with pytest.raises(ValueError, match=r"at b/c: the template has a subtree"):
        checkpoint.restore(path, {"a": np.zeros(2), "b": {"c": {"d": np.zeros(1)}}})
    with pytest.raises(ValueError, match="the template has the entry 'params'"):
        checkpoint.restore(path, _state())  # a TrainState template for a plain dict


def test_a_python_scalar_leaf_must_keep_its_type(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, {"n": 3, "s": "x", "z": None})
    assert checkpoint.restore(path, {"n": 0, "s": "", "z": None}) == (
        {"n": 3, "s": "x", "z": None}, {})
    with pytest.raises(ValueError, match="at n: the template has an array of shape .*the "
                                         "checkpoint a int 3"):
        checkpoint.restore(path, {"n": np.int64(0), "s": "", "z": None})
    with pytest.raises(ValueError, match="at s: the template has a int 0, the checkpoint a "
                                         "str 'x'"):
        checkpoint.restore(path, {"n": 0, "s": 0, "z": None})


def _good(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, {"w": np.arange(1000, dtype=np.float32)}, {"step": 7})
    return path, path.read_bytes()


def test_a_truncated_file_is_refused_with_its_path(tmp_path):
    path, data = _good(tmp_path)
    for cut in (len(data) - 1, len(data) // 2, 30, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="is truncated") as e:
            checkpoint.restore(path, {"w": np.zeros(1000, np.float32)})
        assert str(path) in str(e.value)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is empty \(0 bytes\)"):
        checkpoint.restore(path, {"w": np.zeros(1000, np.float32)})


def test_a_corrupted_file_is_refused_never_loaded_with_changed_weights(tmp_path):
    path, data = _good(tmp_path)
    header_end = data.index(b"\n", len(checkpoint.MAGIC)) + 1
    rng = random.Random(0)
    for _ in range(20):  # a flipped bit anywhere in the payload
        i = rng.randrange(header_end, len(data))
        bad = bytearray(data)
        bad[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="is corrupt: the SHA-256 of its payload does not "
                                             "match") as e:
            checkpoint.restore(path, {"w": np.zeros(1000, np.float32)})
        assert str(path) in str(e.value)
    path.write_bytes(data + b"\x00")
    with pytest.raises(ValueError, match="is corrupt: 1 bytes beyond"):
        checkpoint.restore(path, {"w": np.zeros(1000, np.float32)})
    path.write_bytes(data[:len(checkpoint.MAGIC)] + b"{oops\n" + data[header_end:])
    with pytest.raises(ValueError, match="has a damaged header"):
        checkpoint.restore(path, {"w": np.zeros(1000, np.float32)})


def test_a_newer_format_version_is_refused(tmp_path):
    path, data = _good(tmp_path)
    header_end = data.index(b"\n", len(checkpoint.MAGIC)) + 1
    header = json.loads(data[len(checkpoint.MAGIC):header_end])
    header["version"] = 2
    path.write_bytes(checkpoint.MAGIC + json.dumps(header).encode() + b"\n" + data[header_end:])
    with pytest.raises(ValueError, match="has format version 2; this recurrax reads version 1"):
        checkpoint.restore(path, {"w": np.zeros(1000, np.float32)})


def test_an_old_checkpoint_without_checksum_is_refused_saying_so(tmp_path):
    path = tmp_path / "old.msgpack"  # what recurrax wrote before checksums
    path.write_bytes(serialization.msgpack_serialize(
        {"state": serialization.to_state_dict({"w": np.zeros(3)}), "metadata": "{}"}))
    with pytest.raises(ValueError, match="written by an older recurrax, without a checksum, "
                                         "so it cannot be verified and is refused"):
        checkpoint.restore(path, {"w": np.zeros(3)})


def test_other_files_are_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(ValueError, match="is not a recurrax checkpoint"):
        checkpoint.restore(path, {})
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing.*does not exist"):
        checkpoint.restore(tmp_path / "missing", {})
    with pytest.raises(ValueError, match="is a directory, not a checkpoint file"):
        checkpoint.restore(tmp_path, {})


def test_save_refuses_a_folder_or_a_path_under_a_file(tmp_path):
    with pytest.raises(ValueError, match="is a directory; give a file path such as"):
        checkpoint.save(tmp_path, {"w": np.zeros(1)})
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        checkpoint.save(tmp_path / "f" / "sub" / "c", {"w": np.zeros(1)})
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_save_refuses_what_it_cannot_store_before_writing(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, {"w": np.ones(2)}, {"step": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="metadata must be a dict"):
        checkpoint.save(path, {"w": np.zeros(2)}, ["step", 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"metadata must be JSON-able.*metadata\['x'\]\[1\] is "
                                        r"a ndarray"):
        checkpoint.save(path, {"w": np.zeros(2)}, {"x": [1, np.zeros(2)]})
    with pytest.raises(TypeError, match="state leaf k is a typed PRNG key array.*key_data"):
        checkpoint.save(path, {"k": jax.random.key(0)})
    with pytest.raises(TypeError, match="state leaf f is a function"):
        checkpoint.save(path, {"f": lambda: 0})
    with pytest.raises(TypeError, match="state leaf w is a traced value; call save outside jit"):
        jax.jit(lambda w: checkpoint.save(path, {"w": w}) or w)(jnp.zeros(2))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c"]
    restored, meta = checkpoint.restore(path, {"w": np.zeros(2)})
    np.testing.assert_array_equal(restored["w"], np.ones(2))
    assert meta == {"step": 1}


def test_the_checksum_is_the_sha256_of_the_payload(tmp_path):
    path, data = _good(tmp_path)
    header_end = data.index(b"\n", len(checkpoint.MAGIC)) + 1
    header = json.loads(data[len(checkpoint.MAGIC):header_end])
    payload = data[header_end:]
    assert header == {"version": 1, "payload_bytes": len(payload),
                      "sha256": hashlib.sha256(payload).hexdigest()}


def test_an_optax_adam_state_round_trips(tmp_path):
    params = {"w": jnp.ones((2, 3))}
    opt = train.make_optimizer(0.01, base=optax.adam)
    state = train.create_train_state(params, opt)
    step = train.make_train_step(
        lambda p, b, c, k: (jnp.sum(p["w"] ** 2), (c, {})), opt)
    state, _ = step(state, None)
    checkpoint.save(tmp_path / "c", state)
    restored, _ = checkpoint.restore(tmp_path / "c", train.create_train_state(params, opt))
    _assert_same(restored, state)


WRITER = """
import sys
import numpy as np
from recurrax.train import checkpoint
path, i = sys.argv[1], int(sys.argv[2])
first = True
while True:
    checkpoint.save(path, {"w": np.full((256, 256), i, np.float32),
                           "v": np.full(4096, i, np.int64), "i": np.int32(i)}, {"i": i})
    if first:
        print("saved", flush=True)
        first = False
    i += 1
"""


def test_checkpoints_written_during_a_kill_load_exactly_to_one_written_state(tmp_path):
    """A process saving in a loop is SIGKILLed at random times; every time the
    file loads exactly to one of the states it wrote, never a mix."""
    path = tmp_path / "c"
    template = {"w": np.zeros((256, 256), np.float32), "v": np.zeros(4096, np.int64),
                "i": np.int32(0)}
    rng = random.Random(16)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    last = -1
    for kill in range(6):
        start = 100_000 * (kill + 1)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start)],
                                stdout=subprocess.PIPE, env=env)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"saved\n"
            proc.stdout.close()
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        restored, meta = checkpoint.restore(path, template)
        i = int(restored["i"])
        assert start <= i and i > last and meta == {"i": i}
        np.testing.assert_array_equal(restored["w"], np.full((256, 256), i, np.float32))
        np.testing.assert_array_equal(restored["v"], np.full(4096, i, np.int64))
        last = i
    leftovers = [n for n in os.listdir(tmp_path) if n != "c"]
    assert all(n.startswith(".ckpt-") and n.endswith(".tmp") for n in leftovers)


def test_metadata_alone_is_read_and_verified_without_a_template(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, _state(rows=3), {"config": {"hidden": 8}})
    assert checkpoint.metadata(path) == {"config": {"hidden": 8}}
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(ValueError, match="is truncated"):
        checkpoint.metadata(path)
