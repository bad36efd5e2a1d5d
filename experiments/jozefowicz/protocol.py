"""The protocol: architectures, tasks, presets and the random hyperparameters.

Every trial draws, as the paper describes (its ranges; the distributions
within them are our choice, since the source gives no grid):

    init_scale    s ~ log-uniform [0.3, 2.8]   every param ~ U(−s/√H, s/√H)
    learning_rate   ~ log-uniform [0.1, 5]     plain SGD
    clip_norm       ~ log-uniform [1, 20]      global gradient-norm clip
    layers          ~ uniform over the preset's choices (the paper: 1 to 4)

"Init scale 0.3–2.8 divided by √units" is read as: every parameter (embedding,
cell matrices and biases, readout) is drawn uniformly from [−s/√H, s/√H], H
the hidden size, as in the LSTM code the paper's authors built on; fixed
offsets (LSTM-b's forget-gate bias of 1) are added after and not scaled.
A preset may narrow these ranges (the quick one does, see its comment).

Trials are paired: trial i of every architecture on a task gets the same draws
and the same seed (common random numbers), so differences between cells come
from the cells, not from their luck in the draws.

The hidden size follows from the preset's parameter budget for that task,
architecture and depth (`recurrax.models.budget.hidden_for_budget`), so every
architecture is compared at (nearly) equal size. Minibatches of 20, unrolled 35
steps, the state carried across minibatches on the stream tasks.

Learning-rate schedule (the paper's): evaluate on validation after every
epoch; after 3 epochs without a new best, halve the rate after each epoch for 4
epochs, then stop (`recurrax.train.anneal_update`). An epoch of a generated
task is one pass over its fixed training set (`n_train` examples or
documents, drawn once per task seed); a preset caps training at `epochs`.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from recurrax import cells

ARCHS = cells.NAMES
TASKS = ("arithmetic", "xml", "words", "music")
#: The `"kind"` of a trial (and of its record in a `run` results file), which
#: tells a results file from a search log (whose records are "eval" and "score").
TRIAL_KIND = "trial"


@dataclass(frozen=True)
class Preset:
    name: str
    tasks: tuple[str, ...]
    archs: tuple[str, ...]
    trials: int                    # per task and architecture
    layers: tuple[int, ...]        # the depths drawn from
    epochs: int                    # at most this many epochs per trial
    budget: dict[str, int]         # parameters per task
    task_kwargs: dict[str, dict] = field(default_factory=dict)
    eval_batches: int | None = None  # batches per evaluation (None: the whole split)
    batch: int = 20
    unroll: int = 35
    init_scale: tuple[float, float] = (0.3, 2.8)      # log-uniform ranges of the draws
    learning_rate: tuple[float, float] = (0.1, 5.0)
    clip_norm: tuple[float, float] = (1.0, 20.0)
    patience: int = 3              # epochs without a new best before the decay
    halvings: int = 4              # epochs of decay, the rate halved after each
    reset_at_documents: bool = True  # stream tasks: zero the state where a document starts
    examples_as_stream: bool = False  # arithmetic as one stream of problems (TBPTT windows)

    def __post_init__(self):
        """Refuse a preset (or a `--set` override) that could not run, naming the field."""
        def count(name, value, low):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"preset {self.name!r}: {name} must be an int >= {low}, "
                                 f"got {value!r}")
        for name, low in [("trials", 1), ("epochs", 1), ("batch", 1), ("unroll", 1),
                          ("patience", 1), ("halvings", 0)]:
            count(name, getattr(self, name), low)
        if self.eval_batches is not None:
            count("eval_batches", self.eval_batches, 1)
        if not self.layers or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                  for n in self.layers):
            raise ValueError(f"preset {self.name!r}: layers must be a non-empty tuple of "
                             f"ints >= 1, got {self.layers!r}")
        for name in ("init_scale", "learning_rate", "clip_norm"):
            r = getattr(self, name)
            if (not isinstance(r, tuple) or len(r) != 2 or
                    not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r)
                    or not 0 < r[0] <= r[1]):
                raise ValueError(f"preset {self.name!r}: {name} must be a range (low, high) "
                                 f"with 0 < low <= high, got {r!r}")
        for name in ("reset_at_documents", "examples_as_stream"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"preset {self.name!r}: {name} must be True or False, "
                                 f"got {getattr(self, name)!r}")


_SMALL = dict(n_train=2000, n_valid=200, n_test=200)
PRESETS = {
    "smoke": Preset("smoke", ("arithmetic", "xml"), ("lstm", "gru"), trials=2,
                    layers=(1,), epochs=2,
                    budget={"arithmetic": 3000, "xml": 3000, "words": 200_000, "music": 5000},
                    task_kwargs={"arithmetic": dict(n_train=300, n_valid=100, n_test=100),
                                 "xml": dict(n_train=60, n_valid=40, n_test=40),
                                 "words": dict(vocab_size=2000)},
                    eval_batches=4),
    # 2 CPU cores, under 20 minutes for all ten cells on arithmetic and XML;
    # the pilots behind each choice are in docs/experiments.md. Problems fed as one
    # stream (unroll 35, state carried across minibatches and documents, as the
    # paper trains), sums of 2-digit numbers with up to 8 distractors after
    # each character, tag names of 2 to 4 letters, learning rates from 0.5
    # (no trial below that was the best of any cell in three pilots).
    "quick": Preset("quick", ("arithmetic", "xml"), ARCHS, trials=8, layers=(1,),
                    epochs=20,
                    budget={"arithmetic": 20_000, "xml": 20_000, "words": 250_000, "music": 20_000},
                    task_kwargs={"arithmetic": dict(n_train=4000, n_valid=500, n_test=1000,
                                                    max_digits=2, max_distractors=8),
                                 "xml": dict(n_train=600, n_valid=200, n_test=300,
                                             name_lengths=(2, 4)),
                                 "words": dict(vocab_size=2000)},
                    learning_rate=(0.5, 5.0), reset_at_documents=False,
                    examples_as_stream=True),
    "paper": Preset("paper", TASKS, ARCHS, trials=100, layers=(1, 2, 3, 4), epochs=100,
                    reset_at_documents=False, examples_as_stream=True,
                    budget={"arithmetic": 1_000_000, "xml": 1_000_000, "words": 5_000_000,
                            "music": 1_000_000},
                    task_kwargs={"arithmetic": dict(n_train=100_000, n_valid=2000,
                                                    n_test=2000),
                                 "xml": dict(n_train=20_000, n_valid=1000, n_test=1000)}),
}


def override(preset: Preset, assignments: list[str]) -> Preset:
    """`preset` with settings replaced by `KEY=VALUE` assignments (values are
    Python literals): a field (`epochs=12`, `learning_rate=(0.3, 5)`) or a
    task's argument (`arithmetic.max_distractors=8`). The fingerprint changes
    with them, so a results file never mixes two definitions."""
    fields = {f.name for f in dataclasses.fields(Preset)} - {"name"}
    changes: dict = {}
    task_kwargs = {t: dict(kw) for t, kw in preset.task_kwargs.items()}
    for item in assignments:
        key, sep, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if not sep or value is None:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with a Python literal value, "
                             f"e.g. epochs=12 or arithmetic.max_distractors=8")
        task, dot, arg = key.partition(".")
        if dot and task in TASKS:
            task_kwargs.setdefault(task, {})[arg] = value
        elif key in fields:
            changes[key] = tuple(value) if isinstance(value, list) else value
        else:
            raise ValueError(f"--set {item!r}: {key!r} is neither a preset field "
                             f"({', '.join(sorted(fields))}) nor TASK.ARGUMENT with a task "
                             f"of {', '.join(TASKS)}")
    return dataclasses.replace(preset, task_kwargs=task_kwargs, **changes)


def fingerprint(preset: Preset) -> str:
    """A short digest of everything the preset defines: a results file holds
    the trials of one version of a preset, so a changed preset never resumes
    from (or is reported beside) trials that ran under the old one."""
    return hashlib.sha256(repr(asdict(preset)).encode()).hexdigest()[:8]


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def trial_seed(preset: str, task: str, index: int) -> int:
    """A stable seed per trial, independent of which other trials run, and the
    same for trial `index` of every architecture (paired trials)."""
    digest = hashlib.sha256(f"{preset}/{task}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def draw_trial(preset: Preset, task: str, arch: str, index: int) -> dict:
    """The hyperparameters of one trial, a function of (preset, task, index):
    every architecture's trial `index` gets the same draws. Its `"kind"` is
    `TRIAL_KIND`, and so is that of the record it becomes."""
    seed = trial_seed(preset.name, task, index)
    rng = np.random.default_rng(seed)
    return {
        "kind": TRIAL_KIND, "key": f"{preset.name}/{task}/{arch}/{index}", "preset": preset.name,
        "preset_fingerprint": fingerprint(preset), "task": task,
        "arch": arch, "trial": index, "seed": seed,
        "init_scale": log_uniform(rng, *preset.init_scale),
        "learning_rate": log_uniform(rng, *preset.learning_rate),
        "clip_norm": log_uniform(rng, *preset.clip_norm),
        "layers": int(rng.choice(preset.layers)),
    }


def plan(preset: Preset, tasks, archs, trials: int) -> list[dict]:
    """Every trial of the run, in a fixed order."""
    bad = [t for t in tasks if t not in TASKS] + [a for a in archs if a not in ARCHS]
    if bad:
        raise ValueError(f"unknown tasks or architectures {bad}; tasks: {', '.join(TASKS)}; "
                         f"architectures: {', '.join(ARCHS)}")
    return [draw_trial(preset, t, a, i) for t in tasks for a in archs for i in range(trials)]
