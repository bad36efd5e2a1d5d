"""The README's quick start runs as written and does what it says."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs():
    text = README.read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) <= 16
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    ys, h, lengths = namespace["ys"], namespace["h"], np.asarray(namespace["lengths"])
    assert ys.shape == (100, 8, 64)
    for b, L in enumerate(lengths):  # h is each row's output at its last valid step
        np.testing.assert_allclose(np.asarray(h[b]), np.asarray(ys[L - 1, b]), rtol=1e-6)
        assert not np.any(np.asarray(ys[L:, b]))
    grads, params = namespace["grads"], namespace["params"]
    assert {k: v.shape for k, v in grads.items()} == {k: v.shape for k, v in params.items()}
