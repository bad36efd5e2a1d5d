import jax
import numpy as np
import pytest

import recurrax
from tests import reference as ref


def build(name: str, H: int, **kw) -> recurrax.Cell:
    """The recurrax cell for a reference name ('gru-reset-after' included)."""
    if name == "gru-reset-after":
        return recurrax.cells.gru(H, reset_after=True, **kw)
    return recurrax.cells.get(name, H, **kw)


def input_size(name: str, H: int, other: int) -> int:
    """`other` (!= H) where the cell allows it, else H."""
    return H if name in ref.NEEDS_D_EQUALS_H else other


def to_jax(params, dtype=np.float32):
    return {k: jax.numpy.asarray(v, dtype) for k, v in params.items()}


def as_np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


ALL = [*recurrax.cells.NAMES, "gru-reset-after"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)
