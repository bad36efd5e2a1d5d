"""The architecture search on the study's tasks: presets, and the trainer
that scores a population of candidate cells on one stage in one compiled
program (`recurrax.search.universal`).

    python -m experiments.jozefowicz search --preset {smoke,quick,paper} [--results FILE]
    python -m experiments.jozefowicz report FILE      # a search log: the top cells

Every evaluation trains a one-layer language model (embedding of size H, the
candidate cell, readout) for the stage's SGD steps with the evaluation's own
learning rate, gradient clip and initialisation scale (each log-uniform in the
preset's range), and scores it on the stage's validation split: accuracy for
memorization, arithmetic and XML, perplexity for the language model.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import asdict, dataclass, field
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.jozefowicz import harness_tasks
from experiments.jozefowicz.protocol import log_uniform
from recurrax import models, search, train
from recurrax.search import universal
from recurrax.search.baselines import GRAPHS
from recurrax.train import population


@dataclass(frozen=True)
class SearchPreset:
    name: str
    stages: tuple[tuple[str, float], ...]   # (task, bar relative to the GRU's best)
    steps: dict[str, int]                    # SGD steps per stage
    hidden: int
    population: int
    candidates: int                          # children to create
    task_kwargs: dict[str, dict] = field(default_factory=dict)
    eval_batches: int = 10
    batch: int = 20
    unroll: int = 35
    learning_rate: tuple[float, float] = (0.1, 3.0)
    clip_norm: tuple[float, float] = (1.0, 10.0)
    init_scale: tuple[float, float] = (0.5, 1.5)
    p_reevaluate: float = 0.2
    keep: int = 100


_MEMO = dict(length=4, alphabet=8, n_train=5000, n_valid=200, n_test=200)
PRESETS = {
    "smoke": SearchPreset(
        "smoke", (("memorization", 0.5), ("arithmetic", 0.5)), {"memorization": 20,
                                                                 "arithmetic": 20},
        hidden=8, population=8, candidates=6, eval_batches=2,
        task_kwargs={"memorization": dict(_MEMO, n_train=500, n_valid=60, n_test=60),
                     "arithmetic": dict(n_train=500, n_valid=60, n_test=60, max_digits=1)}),
    # 2 CPU cores, under 30 minutes: the paper's four stages, short.
    "quick": SearchPreset(
        "quick", (("memorization", 0.8), ("arithmetic", 0.8), ("xml", 0.8), ("words", 0.8)),
        {"memorization": 150, "arithmetic": 150, "xml": 100, "words": 100},
        hidden=24, population=24, candidates=200, unroll=20,
        task_kwargs={"memorization": _MEMO,
                     "arithmetic": dict(n_train=5000, n_valid=200, n_test=200, max_digits=2,
                                        max_distractors=1),
                     "xml": dict(n_train=2000, n_valid=100, n_test=100),
                     "words": dict(vocab_size=500)}),
    "paper": SearchPreset(
        "paper", (("memorization", 0.9), ("arithmetic", 0.9), ("xml", 0.9), ("words", 0.9)),
        {"memorization": 5000, "arithmetic": 5000, "xml": 5000, "words": 5000},
        hidden=128, population=64, candidates=10000, learning_rate=(0.05, 5.0),
        clip_norm=(1.0, 20.0), init_scale=(0.3, 2.0), task_kwargs={"words": {}}),
}
SEEDS = ("lstm", "gru")
BASELINES = ("mut1", "mut2", "mut3")


def draw_hyper(preset: SearchPreset, rng: np.random.Generator) -> dict:
    return {"seed": int(rng.integers(2**31 - 1)),
            "learning_rate": log_uniform(rng, *preset.learning_rate),
            "clip_norm": log_uniform(rng, *preset.clip_norm),
            "init_scale": log_uniform(rng, *preset.init_scale)}


def stages(preset: SearchPreset) -> list[search.Stage]:
    return [search.Stage(task, bar, task != "words") for task, bar in preset.stages]


class Trainer:
    """`trainer(stage, graphs, hypers) -> scores`, the `evaluate` of `search.run`."""

    def __init__(self, preset: SearchPreset, layout: universal.Layout = universal.Layout()):
        self.preset, self.layout = preset, layout
        self.setups: dict[str, harness_tasks.Setup] = {}
        self.built: dict[str, tuple] = {}

    def setup(self, task: str) -> harness_tasks.Setup:
        if task not in self.setups:
            p = self.preset
            self.setups[task] = harness_tasks.prepare(task, p.batch, p.unroll,
                                                      p.task_kwargs.get(task))
        return self.setups[task]

    def programs(self, task: str) -> tuple:
        """The model, jitted population steps and scorer of one stage (built once)."""
        if task not in self.built:
            self.built[task] = self._build(task)
        return self.built[task]

    def _build(self, task: str) -> tuple:
        s = self.setup(task)
        model = models.language_model(universal.cell(self.preset.hidden, layout=self.layout),
                                      s.vocab_in, self.preset.hidden, inputs=s.inputs,
                                      output_size=s.vocab_out)
        task_loss = harness_tasks.make_loss(s.kind, model)

        def loss(weights, batch, carry, key, program):
            return task_loss(_with_program(weights, program), batch, carry, key)

        opt = train.make_optimizer(1.0, base=optax.sgd)
        # cast: the population hands each member's program (its context) to `loss` as a
        # fifth argument, which `train.LossFn`, the annotation of make_population_steps,
        # does not spell
        return model, opt, population.make_population_steps(cast(train.LossFn, loss), opt), \
            harness_tasks.make_scores(s.kind, model)

    def __call__(self, stage: search.Stage, graphs: list, hypers: list[dict]) -> list:
        s, p = self.setup(stage.name), self.preset
        model, opt, steps, scores = self.programs(stage.name)
        n = len(graphs)
        pad = lambda xs: xs + [xs[-1]] * (p.population - n)
        graphs, hypers = pad(list(graphs)), pad(list(hypers))
        programs = jax.tree.map(lambda *a: np.stack(a),
                                *[universal.encode(g, self.layout)[0] for g in graphs])
        h = {k: np.array([x[k] for x in hypers]) for k in hypers[0]}
        carry = model.initial_carry((p.batch,)) if s.kind == "stream" else None
        pop = population.init_population(
            lambda key: _without_program(model.init(key)), opt, seeds=h["seed"],
            learning_rate=h["learning_rate"], clip_norm=h["clip_norm"],
            init_scale=h["init_scale"], carry=carry, context=programs)
        pop = pop._replace(states=pop.states._replace(params=jax.vmap(
            functools.partial(_with_diagonal_offsets, layout=self.layout))(
                pop.states.params, pop.context)))
        chunk = population.stack_batches([s.train.batch(i) for i in range(p.steps[s.name])])
        # one program at a time (docs/experiments.md, XLA CPU stalls)
        pop, _ = jax.block_until_ready(steps(pop, chunk))
        members = None if carry is None else jax.tree.map(
            lambda c: jnp.broadcast_to(c, (p.population,) + c.shape), carry)
        params = jax.vmap(_with_program)(pop.states.params, pop.context)
        valid = harness_tasks.evaluate(s, scores, params, members, s.valid, p.eval_batches)
        metric = np.asarray(valid[s.metric])
        diverged = np.asarray(pop.diverged)
        return [None if diverged[m] else float(metric[m]) for m in range(n)]


def _with_program(weights: dict, program) -> dict:
    """The model's params with the cell running `program`."""
    return {**weights, "layers": (universal.with_program(weights["layers"][0], program),)}


def _with_diagonal_offsets(weights: dict, program, layout: universal.Layout) -> dict:
    """A member's drawn (and `init_scale`d) weights with its own program's
    Linear(s, ·) offsets `s·I` added (`universal.with_diagonal_offsets`): the
    population is drawn from one program, so each member adds its own."""
    with_offsets = _with_program(weights, program)
    cell = universal.with_diagonal_offsets(with_offsets["layers"][0], layout)
    return _without_program({**with_offsets, "layers": (cell,)})


def _without_program(params: dict) -> dict:
    """The trained part of the model's params (the program is not trained)."""
    cell = {k: v for k, v in params["layers"][0].items() if k != "program"}
    return {**params, "layers": (cell,)}


#: The search space's version, in the fingerprint: 2 reads Linear(s, ·) as a
#: learned map `x W + b`, W starting at its draw plus s·I (1 read it as s·x).
SPACE_VERSION = 2


def fingerprint(preset: SearchPreset, layout: universal.Layout) -> str:
    """A digest of the preset, the layout and the search space's version: a
    log resumes only its own search."""
    return hashlib.sha256(repr((asdict(preset), layout, SPACE_VERSION)).encode()).hexdigest()[:8]


def run(preset: SearchPreset, results, on_stage=None, candidates: int | None = None):
    """The search of `preset`, logged to (and resumed from) `results`; the
    number of candidates may grow on a rerun (`candidates`) without a new log.
    A `results` that writes a batch at a time (`experiments.cli.DurableResults`
    with `batched=True`, as the command's is) makes a search killed at any
    point resume along the path of one never killed."""
    layout = universal.Layout()
    proposer = search.Proposer(
        draw_hyper=functools.partial(draw_hyper, preset),
        accept=functools.partial(universal.fits, layout=layout),
        p_reevaluate=preset.p_reevaluate, keep=preset.keep)
    return search.run(results, stages(preset), {n: GRAPHS[n] for n in SEEDS},
                      Trainer(preset, layout), proposer, population=preset.population,
                      candidates=preset.candidates if candidates is None else candidates,
                      baselines={n: GRAPHS[n] for n in BASELINES}, on_stage=on_stage,
                      tag={"preset": preset.name,
                           "fingerprint": fingerprint(dataclasses.replace(
                               preset, candidates=0), layout)})


def report(state: search.State, preset_stages: list[search.Stage], top: int = 10) -> str:
    """The top cells found, as equations with their scores, beside the seeds
    and baselines (LSTM, GRU, MUT1-3)."""
    rows = search.table(state, preset_stages, "gru")
    names = [s.name for s in preset_stages]
    found = [r for r in rows if r.origin == "child"][:top]
    known = [r for r in rows if r.origin != "child"]
    children = sum(e.origin == "child" for e in state.evals.values())
    passed = sum(r.origin == "child" for r in rows)
    head = ("| cell | fitness | " + " | ".join(f"{n} (rel. GRU)" for n in names)
            + " | evaluations |\n| --- | --- |" + " --- |" * len(names) + " --- |")
    line = lambda label, r: (f"| {label} | {r.fitness:.3f} | "
                             + " | ".join(f"{r.relative[n]:.3f}" for n in names)
                             + f" | {r.evaluations} |")
    out = [f"{children} candidate cells created, {passed} passed every stage; "
           f"{len(state.evals)} evaluations in all.", "", head]
    out += [line(r.name, r) for r in known]
    out += [line(f"#{i + 1}", r) for i, r in enumerate(found)]
    for i, r in enumerate(found):
        out += ["", f"#{i + 1} (fitness {r.fitness:.3f}; {'; '.join(r.mutations)}):"]
        out += ["    " + e for e in search.describe(r).splitlines()]
    return "\n".join(out)
