"""Train one population: the trials of one task that share an architecture and
a depth (hence a hidden size), all in one compiled program.

Per member the learning rate starts at the trial's draw and is halved after
every validation without a new best (`recurrax.train.plateau_update`, one
`Plateau` per member); the reported metrics are the test scores of the final
params, beside the validation scores used to pick the best trial.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import recurrax
from experiments.jozefowicz import tasks as harness_tasks
from experiments.jozefowicz.protocol import Preset
from recurrax import budget, models, population, train


@functools.lru_cache(maxsize=64)
def programs(kind: str, vocab_in: int, vocab_out: int, inputs: str, arch: str, layers: int,
             hidden: int):
    """The model, optimizer, jitted population steps (`eval_every` SGD steps per
    call) and jitted scorer of one shape, built once per process, so
    populations (or single trials) of the same shape reuse the compiled code."""
    model = models.language_model(arch, vocab_in, hidden, layers, inputs=inputs,
                                  output_size=vocab_out)
    opt = train.make_optimizer(1.0, base=optax.sgd)  # the rate is set per member
    steps = population.make_population_steps(harness_tasks.make_loss(kind, model), opt)
    return model, opt, steps, harness_tasks.make_scores(kind, model)


_set_rates = jax.jit(jax.vmap(train.set_learning_rate))


def run_population(setup: harness_tasks.Setup, preset: Preset, arch: str, layers: int,
                   trials: list[dict], mesh=None) -> list[dict]:
    """Train `trials` (same task, arch, layers) together; one record per trial."""
    start = time.perf_counter()
    H = budget.hidden_for_budget(arch, preset.budget[setup.name], vocab_in=setup.vocab_in,
                                 vocab_out=setup.vocab_out, num_layers=layers,
                                 inputs=setup.inputs)
    model, opt, steps, scores = programs(setup.kind, setup.vocab_in, setup.vocab_out,
                                         setup.inputs, arch, layers, H)
    n_params = budget.count_params(arch, H, vocab_in=setup.vocab_in, vocab_out=setup.vocab_out,
                                   num_layers=layers, inputs=setup.inputs)
    M = len(trials)
    hyper = {k: np.array([t[k] for t in trials]) for k in
             ("seed", "learning_rate", "clip_norm", "init_scale")}
    multiple = 1 if mesh is None else len(mesh.devices.flat)
    hyper = {k: population.pad_members(v, multiple) for k, v in hyper.items()}
    carry = model.initial_carry((preset.batch,)) if setup.kind == "stream" else None
    pop = population.init_population(model.init, opt, seeds=hyper["seed"],
                                     learning_rate=hyper["learning_rate"],
                                     clip_norm=hyper["clip_norm"],
                                     init_scale=hyper["init_scale"], carry=carry)
    place = (lambda x: x) if mesh is None else (lambda x: population.replicate(x, mesh))
    if mesh is not None:
        pop = population.shard_members(pop, mesh)
    plateau = jax.vmap(lambda _: train.plateau_init())(jnp.arange(len(hyper["seed"])))
    base_lr = jnp.asarray(hyper["learning_rate"], jnp.float32)

    def eval_carry():
        return None if carry is None else jax.tree.map(
            lambda c: jnp.broadcast_to(c, (len(hyper["seed"]),) + c.shape), carry)

    # `eval_every` SGD steps per call (one dispatch each), then a validation
    # and the plateau rule, as the paper's schedule has it.
    for first in range(0, preset.steps, preset.eval_every):
        last = min(first + preset.eval_every, preset.steps)
        chunk = population.stack_batches([setup.train.batch(i) for i in range(first, last)])
        pop, _ = steps(pop, place(chunk))
        if last < preset.steps:
            valid = harness_tasks.evaluate(setup, scores, pop.states.params, eval_carry(),
                                           setup.valid, preset.eval_batches)
            plateau = jax.vmap(train.plateau_update)(plateau, jnp.asarray(valid["nll"]))
            states = pop.states._replace(opt_state=_set_rates(pop.states.opt_state,
                                                              base_lr * plateau.scale))
            pop = pop._replace(states=states)
    valid = harness_tasks.evaluate(setup, scores, pop.states.params, eval_carry(), setup.valid,
                                   preset.eval_batches)
    test = harness_tasks.evaluate(setup, scores, pop.states.params, eval_carry(), setup.test,
                                  preset.eval_batches)
    seconds = time.perf_counter() - start
    diverged, at = np.asarray(pop.diverged), np.asarray(pop.diverged_at)
    steps = np.asarray(pop.states.step)
    records = []
    for m, t in enumerate(trials):
        metrics = {f"{split}_{k}": (None if diverged[m] else float(v[m]))
                   for split, scores_ in (("valid", valid), ("test", test))
                   for k, v in scores_.items()}
        records.append({**t, "hidden": H, "params": n_params, "metrics": metrics,
                        "diverged": bool(diverged[m]),
                        "diverged_at": int(at[m]) if diverged[m] else None,
                        "steps": int(steps[m]), "population": M,
                        "seconds": round(seconds / M, 3), "recurrax": recurrax.__version__})
    return records
