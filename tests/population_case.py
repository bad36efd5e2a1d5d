"""A small population problem shared by the population tests (and run in a
subprocess with several CPU devices by the sharding test)."""

import numpy as np
import optax

from recurrax import batching, losses, models, population, train

M, B, T, V, H = 6, 4, 8, 7, 8


def setup(learning_rate=None):
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


def run(steps=5, mesh=None, learning_rate=None):
    lm, windows, loss_fn, opt, hyper = setup(learning_rate)
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
