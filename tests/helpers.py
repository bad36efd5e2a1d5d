"""What several test modules share: building a cell by its reference name,
converting parameter trees, central finite differences, counting the matmuls
inside compiled loops, and a small population problem."""

import re
from pathlib import Path
from typing import TypedDict

import jax
import jax.numpy as jnp
import numpy as np
import optax

import recurrax
from recurrax import models, train
from recurrax.nn import losses
from recurrax.train import batching, population
from tests import reference as ref

ALL = [*recurrax.cells.NAMES, "gru-reset-after"]


def run_docs_block(page: str, pattern: str) -> dict:
    """Run the first Python code block after the text matching `pattern` in
    `docs/<page>`; return the names it defined."""
    path = Path(__file__).resolve().parents[1] / "docs" / page
    block = re.search(pattern + r".*?```python\n(.*?)```", path.read_text(), re.S)
    assert block, f"docs/{page} has no Python block after {pattern!r}"
    namespace: dict = {}
    exec(compile(block.group(1), f"docs/{page}", "exec"), namespace)
    return namespace


class Tolerance(TypedDict):
    """`rtol` and `atol` of `np.testing.assert_allclose`, to pass as `**tol`
    (a TypedDict, so a type checker matches each key to its parameter)."""

    rtol: float
    atol: float


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


def finite_difference_grad(f, x, eps=1e-6):
    """Central differences of a scalar `f` along every coordinate of `x`,
    all perturbations evaluated in one vmapped call."""
    basis = jnp.eye(x.size, dtype=x.dtype) * eps
    plus = jax.vmap(f)(x + basis)
    minus = jax.vmap(f)(x - basis)
    return (plus - minus) / (2 * eps)


def loop_matmuls(hlo: str) -> int:
    """Instructions in the bodies of the while loops of compiled HLO text that
    are a `dot`, or a fusion (or call) whose computation holds one."""
    comps: dict[str, list[str]] = {}
    current = None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head and not line.startswith(" "):
            current = comps.setdefault(head.group(1), [])
        elif current is not None and re.match(r"^\s+(?:ROOT )?%[\w.\-]+ = ", line):
            current.append(line)

    def multiplies(line: str) -> bool:
        called = re.findall(r"calls=%([\w.\-]+)", line)
        return " dot(" in line or any(multiplies(inner)
                                      for c in called for inner in comps.get(c, []))

    bodies = set(re.findall(r"body=%([\w.\-]+)", hlo))
    return sum(1 for body in bodies for line in comps.get(body, []) if multiplies(line))


# A small population problem shared by the population tests (and run in a
# subprocess with several CPU devices by the sharding test).
M, B, T, V, H = 6, 4, 8, 7, 8


def population_setup(learning_rate=None):
    lm = models.language_model("lstm", V, H)
    tokens = np.random.default_rng(0).integers(0, V, 4000)
    windows = batching.StreamWindows(tokens, None, B, T)

    def loss_fn(params, batch, carry, key):
        carry, logits = lm.apply(params, batch["inputs"], carry)
        return losses.softmax_cross_entropy(logits, batch["targets"]), (carry, {})

    opt = train.make_optimizer(1.0, base=optax.sgd)  # the rate is set per member
    lr = np.array([0.5, 1.0, 0.1, 2.0, 0.3, 0.7]) if learning_rate is None else learning_rate
    hyper = dict(seeds=np.arange(M) + 10, learning_rate=lr,
                 clip_norm=np.array([0.5, 1.0, 5.0, 0.1, 1e9, 2.0]),
                 init_scale=np.array([1.0, 0.5, 2.0, 1.0, 1.5, 0.8]))
    return lm, windows, loss_fn, opt, hyper


def population_run(steps=5, mesh=None, learning_rate=None):
    lm, windows, loss_fn, opt, hyper = population_setup(learning_rate)
    if mesh is not None:
        hyper = {k: population.pad_members(v, len(mesh.devices.flat)) for k, v in hyper.items()}
    pop = population.init_population(lm.init, opt, carry=lm.initial_carry((B,)), **hyper)
    step = population.make_population_step(loss_fn, opt)
    if mesh is not None:
        pop = population.shard_members(pop, mesh)
    history = []
    for i in range(steps):
        batch = windows.batch(i)
        if mesh is not None:
            batch = population.replicate(batch, mesh)
        pop, metrics = step(pop, batch)
        history.append(np.asarray(metrics["loss"])[:M])
    return pop, np.array(history).reshape(steps, M)
