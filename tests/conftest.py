"""Shared fixtures, and XLA's CPU compiler set for the tests' small programs,
whose time is mostly compilation: LLVM at optimisation level 0 and XLA's
older elemental emitters for fusions instead of the MLIR fusion emitters.
On the 2-core CPU (jax 0.10.2) the two together compiled a sample of the
suite (tests/test_deferred.py and tests/test_kernels.py) in 13 s instead of
22 s. Neither allows reassociation or other fast-math. Set before anything
imports jax; a flag already in XLA_FLAGS wins."""

import os

import numpy as np
import pytest

for flag, value in (("xla_backend_optimization_level", "0"),
                    ("xla_cpu_use_fusion_emitters", "false")):
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{flag}={value}".strip()



@pytest.fixture
def rng():
    return np.random.default_rng(0)
