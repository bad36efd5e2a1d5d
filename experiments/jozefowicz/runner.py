"""Train one population: the trials of one task that share an architecture and
a depth (hence a hidden size), all in one compiled program.

Each member starts from the paper's initialisation (`paper_init`) and follows
the paper's schedule (`recurrax.train.anneal_update`, one `Anneal` per member):
one compiled call trains an epoch, one more scores the whole validation split,
then the schedule sets each member's learning rate (0 once it has finished).
The population stops when every member has finished or diverged, or after the
preset's `epochs`. Reported: the validation and test scores of the final
params (validation picks the best trial).
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import recurrax
from experiments.jozefowicz import harness_tasks
from experiments.jozefowicz.protocol import Preset
from recurrax import cells, models, train
from recurrax.initializers import Initializers
from recurrax.models import budget
from recurrax.train import population


def use_cpu_devices(count: int | None = None) -> int:
    """Split the host CPU into `count` JAX devices (default: one per usable
    core), so that a population's members, sharded over the devices, train on
    every core at once (one XLA CPU device keeps about 1.2 of 2 cores busy on
    these small programs). Must run before JAX initialises its backends;
    afterwards (e.g. called from Python after other JAX work) it changes
    nothing. Returns the number of CPU devices asked for."""
    count = len(os.sched_getaffinity(0)) if count is None else count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"cpu devices: expected a positive int, got {count!r}")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backends are up already: keep what they have
        pass
    return count


def member_mesh():
    """The mesh members are sharded over (all devices, of every process when
    several run together: `experiments.jozefowicz.multihost`), or `None` on
    one."""
    return population.member_mesh() if len(jax.devices()) > 1 else None


@functools.lru_cache(maxsize=64)
def programs(kind: str, vocab_in: int, vocab_out: int, inputs: str, arch: str, layers: int,
             hidden: int):
    """The model, optimizer, jitted population steps (an epoch of SGD steps per
    call) and jitted scorer of one shape, built once per process, so
    populations (or single trials) of the same shape reuse the compiled code."""
    model = models.language_model(arch, vocab_in, hidden, layers, inputs=inputs,
                                  output_size=vocab_out)
    opt = train.make_optimizer(1.0, base=optax.sgd)  # the rate is set per member
    steps = population.make_population_steps(harness_tasks.make_loss(kind, model), opt)
    return model, opt, steps, harness_tasks.make_scores(kind, model)


def paper_init(model: models.TokenModel, arch: str, hidden: int):
    """`(init_params, offset)`: `init_params(key)` draws every param of `model`
    (embedding, cells, readout) from U(−1/√H, 1/√H) and adds `offset`, the
    fixed part of the cells' initialisation (LSTM-b's forget-gate bias of 1,
    zeros elsewhere). `population.init_population(..., init_offset=offset,
    init_scale=s)` then gives `offset + U(−s/√H, s/√H)`. No QR anywhere."""
    zero = jax.nn.initializers.zeros
    fixed = cells.get(arch, hidden, initializers=Initializers(zero, zero, zero))
    key0 = jax.random.key(0)  # the zero initialisers ignore it
    shapes = jax.eval_shape(model.init, key0)
    zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)
    widths = [hidden] * len(model.cells)  # the embedding is H wide (language_model's default)
    offset = {"embed": zeros(shapes["embed"]), "readout": zeros(shapes["readout"]),
              "layers": tuple(fixed.init(key0, d) for d in widths)}
    bound = 1.0 / np.sqrt(hidden)

    def init_params(key):
        leaves, tree = jax.tree.flatten(shapes)
        keys = jax.random.split(key, len(leaves))
        draws = [jax.random.uniform(k, s.shape, s.dtype, -bound, bound)
                 for k, s in zip(keys, leaves, strict=True)]
        return jax.tree.map(jnp.add, offset, jax.tree.unflatten(tree, draws))

    return init_params, offset


_set_rates = jax.jit(jax.vmap(train.set_learning_rate))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _anneal(state: train.Anneal, valid_nll: jax.Array, patience: int, halvings: int):
    """`train.anneal_update` for every member."""
    return jax.vmap(functools.partial(train.anneal_update, patience=patience,
                                      halvings=halvings))(state, valid_nll)


def run_population(setup: harness_tasks.Setup, preset: Preset, arch: str, layers: int,
                   trials: list[dict], mesh=None) -> list[dict]:
    """Train `trials` (same task, arch, layers) together; one record per trial.
    With a `mesh` over several processes, every process calls this with the
    same arguments, trains the members on its devices, and returns every
    trial's record (the scores are gathered to all processes)."""
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
    members = len(hyper["seed"])
    carry = model.initial_carry((preset.batch,)) if setup.kind == "stream" else None
    init_params, offset = paper_init(model, arch, H)
    pop = population.init_population(init_params, opt, seeds=hyper["seed"],
                                     learning_rate=hyper["learning_rate"],
                                     clip_norm=hyper["clip_norm"],
                                     init_scale=hyper["init_scale"], init_offset=offset,
                                     carry=carry)
    place = (lambda x: x) if mesh is None else (lambda x: population.replicate(x, mesh))
    spread = (lambda x: x) if mesh is None else (lambda x: population.shard_members(x, mesh))
    pop = spread(pop)
    anneal = jax.vmap(lambda _: train.anneal_init())(jnp.arange(members))
    base_lr = jnp.asarray(hyper["learning_rate"], jnp.float32)
    eval_carry = None if carry is None else spread(jax.tree.map(
        lambda c: jnp.broadcast_to(c, (members,) + c.shape), carry))
    epoch = len(setup.train)

    def score(split):
        return harness_tasks.evaluate(setup, scores, pop.states.params, eval_carry, split,
                                      preset.eval_batches)

    trained = np.zeros(members, int)  # SGD steps with a learning rate above 0
    for e in range(preset.epochs):
        trained += epoch * (np.asarray(anneal.scale > 0) & ~population.to_host(pop.diverged))
        chunk = population.stack_batches([setup.train.batch(i)
                                          for i in range(e * epoch, (e + 1) * epoch)])
        pop, _ = steps(pop, place(chunk))
        valid = score(setup.valid)
        anneal = _anneal(anneal, jnp.asarray(valid["nll"], jnp.float32), preset.patience,
                         preset.halvings)
        finished = np.asarray(anneal.scale == 0) | population.to_host(pop.diverged)
        if finished.all():
            break
        states = pop.states._replace(opt_state=_set_rates(pop.states.opt_state,
                                                          spread(base_lr * anneal.scale)))
        pop = pop._replace(states=states)
    test = score(setup.test)
    seconds = time.perf_counter() - start
    diverged, at, step = population.to_host((pop.diverged, pop.diverged_at, pop.states.step))
    steps_done = np.minimum(trained, step)  # a diverged member stops
    halvings = np.asarray(anneal.halvings)
    records = []
    for m, t in enumerate(trials):
        metrics = {f"{split}_{k}": (None if diverged[m] else float(v[m]))
                   for split, scores_ in (("valid", valid), ("test", test))
                   for k, v in scores_.items()}
        records.append({**t, "hidden": H, "params": n_params, "metrics": metrics,
                        "diverged": bool(diverged[m]),
                        "diverged_at": int(at[m]) if diverged[m] else None,
                        "steps": int(steps_done[m]), "epoch_steps": epoch,
                        "halvings": int(halvings[m]), "population": M,
                        "seconds": round(seconds / M, 3), "recurrax": recurrax.__version__})
    return records
