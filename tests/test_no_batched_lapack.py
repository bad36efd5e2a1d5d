"""No batched LAPACK call in the programs recurrax builds.

From jaxlib 0.10.0 a batched LAPACK custom call on CPU (e.g. the QR behind
`jax.nn.initializers.orthogonal()` under `vmap`) splits its batch into chunks on
XLA's intra-op pool and waits for them; as many such calls at once as the pool
has threads deadlock the process (`recurrax.train.population`'s docstring). So every
QR and SVD recurrax compiles works on one matrix. The fast tests read the
compiled HLO: every `custom-call` whose target names LAPACK must have operands
of rank ≤ 2. The slow ones run `lapack_stall_reproducer.py` in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxlib.version import __version__ as jaxlib_version

import recurrax
from recurrax import models, train
from recurrax.metrics import gradient_flow as analysis
from recurrax.search import universal
from recurrax.train import population

#: jaxlib versions whose batched LAPACK kernels deadlock (measured: 0.10.0-0.10.2 stall,
#: 0.9.2 does not; docs/experiments.md, "XLA CPU stalls: the cause, removed").
AFFECTED_JAXLIB = ("0.10.0", "0.10.1", "0.10.2")
REPRODUCER = Path(__file__).with_name("lapack_stall_reproducer.py")
STALLED = 3  # the reproducer's exit status for a stall
M, V, H = 3, 5, 4  # members, vocabulary, hidden size: small programs

_DEF = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\w+\[[\d,]*\])")
_CALL = re.compile(r"custom-call\(([^)]*)\).*custom_call_target=\"([^\"]*lapack[^\"]*)\"", re.I)
_OPERAND = re.compile(r"(?:(\w+\[[\d,]*\])\S*\s+)?%?([\w.\-]+)")  # [type] name


def _rank(shape: str) -> int:
    """The rank of an HLO array type such as `f32[4,8,8]`."""
    dims = shape[shape.index("[") + 1:shape.index("]")]
    return len(dims.split(",")) if dims else 0


def lapack_calls(hlo: str) -> list[tuple[str, list[str]]]:
    """`(target, operand types)` of every LAPACK custom call in HLO text; an
    operand printed by name gets the type of the instruction defining it."""
    types = {m[1]: m[2] for m in map(_DEF.match, hlo.splitlines()) if m}
    return [(target, [typ or types.get(name, "?") for typ, name in _OPERAND.findall(operands)])
            for operands, target in _CALL.findall(hlo)]


def batched(calls: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """The calls with an operand of rank > 2: a batch of matrices."""
    return [(t, ops) for t, ops in calls if any("[" in op and _rank(op) > 2 for op in ops)]


def compiled_text(f, *args) -> str:
    text = jax.jit(f).lower(*args).compile().as_text()
    assert text is not None, "the compiled program has no HLO text"
    return text


def assert_unbatched(hlo: str) -> None:
    """At least one LAPACK call (so the detector sees them) and none batched."""
    calls = lapack_calls(hlo)
    assert calls, "no LAPACK custom call found: did the targets' names change?"
    assert all("[" in op for _, ops in calls for op in ops), f"unparsed operands: {calls}"
    assert not batched(calls), f"batched LAPACK calls: {batched(calls)}"


def init_population_text(init_params) -> str:
    """The compiled program of `init_population` for M members of `init_params`."""
    opt = train.make_optimizer(1.0, base=optax.sgd)
    hyper = dict(seeds=np.arange(M) + 7, learning_rate=np.full(M, 0.1),
                 clip_norm=np.ones(M), init_scale=np.linspace(0.5, 2.0, M))
    return compiled_text(lambda: population.init_population(init_params, opt, **hyper).states)


@pytest.mark.parametrize("qr", [True, False], ids=["qr", "svd"])
def test_the_detector_finds_a_vmapped_lapack_call(qr):
    """Positive control: a vmapped orthogonal draw (QR) or a stacked SVD is batched."""
    if qr:
        draw = jax.vmap(lambda k: jax.nn.initializers.orthogonal()(k, (H, H)))
        hlo = compiled_text(draw, jax.random.split(jax.random.PRNGKey(0), M))
    else:
        hlo = compiled_text(lambda J: jnp.linalg.svd(J, compute_uv=False), jnp.ones((M, H, H)))
    assert batched(lapack_calls(hlo))


@pytest.mark.parametrize("name", recurrax.cells.NAMES)
def test_init_population_draws_unbatched(name):
    assert_unbatched(init_population_text(models.language_model(name, V, H).init))


def test_universal_init_in_a_population_draws_unbatched():
    model = models.language_model(universal.cell(H), V, H)

    def init(key):  # the trained params, as the search's Trainer draws them
        params = model.init(key)
        cell = {k: v for k, v in params["layers"][0].items() if k != "program"}
        return {**params, "layers": (cell,)}

    assert_unbatched(init_population_text(init))


def test_spectral_gradient_flow_runs_unbatched_svds():
    cell = recurrax.cells.get("lstm", H)
    params = cell.init(jax.random.PRNGKey(0), V)
    xs = jnp.ones((3, 2, V))
    assert_unbatched(compiled_text(
        lambda p, x: analysis.gradient_flow(cell, p, x, spectral=True).spectral_norm, params, xs))


def run_reproducer(mode: str, seconds: int) -> subprocess.CompletedProcess:
    """`lapack_stall_reproducer.py` in its own process, with no `XLA_FLAGS`."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.run([sys.executable, str(REPRODUCER), "--mode", mode, "--seconds",
                           str(seconds)], env=env, capture_output=True, text=True,
                          timeout=seconds + 120)


@pytest.mark.slow
def test_reproducer_unbatched_never_stalls():
    """The draws as recurrax makes them (one QR at a time) ran 14,192 iterations in 60 s."""
    out = run_reproducer("unbatched", 45)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_reproducer_batched_stalls_exactly_on_affected_jaxlib():
    """On jaxlib 0.10.2 here the batched form stalled in each of 3 runs, at iteration 15
    (about 14 s with compilation); 60 s leaves a wide margin. A different outcome means a
    jaxlib that fixed (or broke) the kernels: update `AFFECTED_JAXLIB` and the docs."""
    out = run_reproducer("batched", 60)
    log = out.stdout + out.stderr
    assert out.returncode in (0, STALLED), log
    stalled, affected = out.returncode == STALLED, jaxlib_version in AFFECTED_JAXLIB
    assert stalled == affected, (
        f"jaxlib {jaxlib_version} {'is' if affected else 'is not'} in AFFECTED_JAXLIB but "
        f"the batched reproducer {'stalled' if stalled else 'did not stall in 60 s'}: update "
        f"AFFECTED_JAXLIB, the docstrings of recurrax.train.population, "
        f"recurrax.metrics.gradient_flow and "
        f"experiments.jozefowicz.watchdog, and docs/experiments.md's 'XLA CPU stalls'.\n{log}")


def test_dense_elk_has_no_lapack_call():
    """ELK's Kalman combine solves N × N systems inside an associative scan,
    several at once: by Gauss–Jordan in `jnp` operations, never LAPACK."""
    from recurrax import parallel

    cell = recurrax.cells.rnn(H)
    params = cell.init(jax.random.PRNGKey(0), H)
    xs = jnp.ones((6, 2, H))
    hlo = compiled_text(lambda p: parallel.scan(cell, p, xs, method="elk")[1], params)
    assert lapack_calls(hlo) == []
