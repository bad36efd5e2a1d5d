"""The protocol: architectures, tasks, presets and the random hyperparameters.

Every trial draws, as the paper describes (its exact distributions are our
choice, stated here and in the README):

    init_scale    ~ log-uniform [0.3, 2]    multiplies Flax's default initialisers
    learning_rate ~ log-uniform [0.05, 5]   plain SGD, halved after a validation
                                            without improvement
    clip_norm     ~ log-uniform [1, 20]     global gradient-norm clip
    layers        ~ uniform over the preset's choices (the paper: 1 to 4)

The hidden size then follows from the preset's parameter budget for that
task, architecture and depth (`recurrax.budget.hidden_for_budget`), so every
architecture is compared at (nearly) equal size. Minibatches of 20, unrolled 35
steps, the state carried across minibatches on the stream tasks.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from recurrax import cells

ARCHS = cells.NAMES
TASKS = ("arithmetic", "xml", "words", "music")


@dataclass(frozen=True)
class Preset:
    name: str
    tasks: tuple[str, ...]
    archs: tuple[str, ...]
    trials: int                    # per task and architecture
    layers: tuple[int, ...]        # the depths drawn from
    steps: int                     # SGD steps per trial
    eval_every: int
    budget: dict[str, int]         # parameters per task
    task_kwargs: dict[str, dict] = field(default_factory=dict)
    eval_batches: int = 50         # at most this many batches per evaluation
    batch: int = 20
    unroll: int = 35


_SMALL = dict(n_train=2000, n_valid=200, n_test=200)
PRESETS = {
    "smoke": Preset("smoke", ("arithmetic", "xml"), ("lstm", "gru"), trials=2,
                    layers=(1,), steps=30, eval_every=15,
                    budget={"arithmetic": 3000, "xml": 3000, "words": 200_000, "music": 5000},
                    task_kwargs={"arithmetic": _SMALL, "xml": _SMALL}, eval_batches=4),
    # 2 CPU cores, under 20 minutes: the two tasks of the paper's clearest
    # findings, one layer (one population of 4 per architecture and task),
    # numbers of at most 2 digits, and 1500 SGD steps.
    "quick": Preset("quick", ("arithmetic", "xml"), ARCHS, trials=4, layers=(1,),
                    steps=1500, eval_every=300,
                    budget={"arithmetic": 20_000, "xml": 20_000, "words": 250_000, "music": 20_000},
                    task_kwargs={"arithmetic": dict(n_train=10000, n_valid=500, n_test=1000,
                                                    max_digits=2),
                                 "xml": dict(n_train=3000, n_valid=200, n_test=300),
                                 "words": dict(vocab_size=2000)},
                    eval_batches=25),
    "paper": Preset("paper", TASKS, ARCHS, trials=100, layers=(1, 2, 3, 4), steps=20000,
                    eval_every=1000,
                    budget={"arithmetic": 1_000_000, "xml": 1_000_000, "words": 5_000_000,
                            "music": 1_000_000}, eval_batches=1000),
}


def fingerprint(preset: Preset) -> str:
    """A short digest of everything the preset defines: a results file holds
    the trials of one version of a preset, so a changed preset never resumes
    from (or is reported beside) trials that ran under the old one."""
    return hashlib.sha256(repr(asdict(preset)).encode()).hexdigest()[:8]


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def trial_seed(preset: str, task: str, arch: str, index: int) -> int:
    """A stable seed per trial, independent of which other trials run."""
    digest = hashlib.sha256(f"{preset}/{task}/{arch}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def draw_trial(preset: Preset, task: str, arch: str, index: int) -> dict:
    """The hyperparameters of one trial, a function of its name alone."""
    seed = trial_seed(preset.name, task, arch, index)
    rng = np.random.default_rng(seed)
    return {
        "key": f"{preset.name}/{task}/{arch}/{index}", "preset": preset.name,
        "preset_fingerprint": fingerprint(preset), "task": task,
        "arch": arch, "trial": index, "seed": seed,
        "init_scale": log_uniform(rng, 0.3, 2.0),
        "learning_rate": log_uniform(rng, 0.05, 5.0),
        "clip_norm": log_uniform(rng, 1.0, 20.0),
        "layers": int(rng.choice(preset.layers)),
    }


def plan(preset: Preset, tasks, archs, trials: int) -> list[dict]:
    """Every trial of the run, in a fixed order."""
    bad = [t for t in tasks if t not in TASKS] + [a for a in archs if a not in ARCHS]
    if bad:
        raise ValueError(f"unknown tasks or architectures {bad}; tasks: {', '.join(TASKS)}; "
                         f"architectures: {', '.join(ARCHS)}")
    return [draw_trial(preset, t, a, i) for t in tasks for a in archs for i in range(trials)]
