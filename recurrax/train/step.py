r"""Training on top of optax: a `TrainState` pytree, a jitted train step,
global-norm clipping, and the paper's learning-rate rule.

A loss function has the signature

    loss_fn(params, batch, carry, key) -> (loss, (carry, metrics))

where `carry` is the recurrent state handed in from the previous chunk (for
truncated BPTT) and the returned carry is the one to hand to the next. The
train step differentiates `loss` with respect to `params` only; the carry it
keeps is passed through `stop_gradient`, so gradients never flow across
chunks:

    g = ∇_θ L(θ; batch, carry),   θ ← θ + optimizer(clip(g)),   carry ← sg(carry')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[Any, dict]]]


class TrainState(NamedTuple):
    """Everything a run needs to continue: `params`, `opt_state`, `step` (int32),
    the recurrent `carry` handed across chunks, and a raw `uint32[2]` PRNG
    `key` (raw so that checkpoints can serialise it)."""

    params: Any
    opt_state: Any
    step: jax.Array
    carry: Any
    key: jax.Array


def create_train_state(params: Any, optimizer: optax.GradientTransformation, *,
                       carry: Any = None, seed: int = 0) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), carry,
                      jax.random.PRNGKey(seed))


def make_optimizer(learning_rate: float, *, clip_norm: float | None = None,
                   base: Callable[..., optax.GradientTransformation] = optax.sgd,
                   **base_kwargs: Any) -> optax.GradientTransformation:
    """`clip_by_global_norm(clip_norm)` (when given) followed by `base` (e.g.
    `optax.sgd`, `optax.adam`) with an injectable learning rate, so that
    `set_learning_rate` can change it between steps:

        g ← g · min(1, c / ‖g‖₂),   then   base(learning_rate)
    """
    inner = optax.inject_hyperparams(base)(learning_rate=learning_rate, **base_kwargs)
    if clip_norm is None:
        return inner
    return optax.chain(optax.clip_by_global_norm(clip_norm), inner)


def _injected(s: Any) -> bool:
    """An `optax.inject_hyperparams` state holding a learning rate (its class
    differs between optax versions, so test the field)."""
    return isinstance(getattr(s, "hyperparams", None), dict) and "learning_rate" in s.hyperparams


def _hyperparam_states(opt_state: Any) -> list:
    return [s for s in jax.tree.leaves(opt_state, is_leaf=_injected) if _injected(s)]


def get_learning_rate(opt_state: Any) -> jax.Array:
    states = _hyperparam_states(opt_state)
    if not states:
        raise ValueError("get_learning_rate: the optimizer was not built by make_optimizer "
                         "(no optax.inject_hyperparams state found)")
    return states[0].hyperparams["learning_rate"]


def set_learning_rate(opt_state: Any, learning_rate: float | jax.Array) -> Any:
    """A copy of `opt_state` whose injected learning rate is `learning_rate`."""
    get_learning_rate(opt_state)  # raises, with the explanation, for another optimizer

    def replace(s):
        if _injected(s):
            lr = jnp.asarray(learning_rate, jnp.asarray(s.hyperparams["learning_rate"]).dtype)
            return s._replace(hyperparams={**s.hyperparams, "learning_rate": lr})
        return s

    return jax.tree.map(replace, opt_state, is_leaf=_injected)


class Plateau(NamedTuple):
    """State of the learning-rate rule: the best validation loss so far, the
    factor on the base learning rate, and evaluations since the last improvement."""

    best: jax.Array
    scale: jax.Array
    waited: jax.Array


def plateau_init() -> Plateau:
    return Plateau(jnp.asarray(jnp.inf), jnp.asarray(1.0), jnp.asarray(0, jnp.int32))


def plateau_update(state: Plateau, valid_loss: jax.Array | float, *, factor: float = 0.5,
                   patience: int = 0) -> Plateau:
    """The paper's rule: after `patience + 1` validations in a row without a
    new best, multiply the learning rate by `factor` (halve it):

        scale ← scale · factor   if   waited > patience

    Pure `jnp`, so a population can carry one `Plateau` per member under `vmap`.
    """
    improved = valid_loss < state.best
    waited = jnp.where(improved, 0, state.waited + 1)
    decay = waited > patience
    return Plateau(
        best=jnp.minimum(state.best, valid_loss),
        scale=jnp.where(decay, state.scale * factor, state.scale),
        waited=jnp.where(decay, 0, waited),
    )


class Anneal(NamedTuple):
    """State of the Jozefowicz et al. (2015) schedule, evaluated once per epoch:
    the best validation loss so far, epochs since it improved, halvings done
    (0 until the decay starts), and the factor on the base learning rate
    (0 once training has ended)."""

    best: jax.Array
    waited: jax.Array
    halvings: jax.Array
    scale: jax.Array


def anneal_init() -> Anneal:
    return Anneal(jnp.asarray(jnp.inf), jnp.asarray(0, jnp.int32), jnp.asarray(0, jnp.int32),
                  jnp.asarray(1.0))


def anneal_update(state: Anneal, valid_loss: jax.Array | float, *, patience: int = 3,
                  halvings: int = 4, factor: float = 0.5) -> Anneal:
    """The paper's schedule, called after each epoch: once `patience` epochs in a
    row have brought no new best validation loss, the learning rate is halved
    after that epoch and after each of the next ones, `halvings` times in all;
    the epoch after the last halving is the last one (then `scale = 0`):

        decaying ← halvings_done > 0  or  waited ≥ patience
        scale    ← 0                  if halvings_done = halvings
                   scale · factor     elif decaying   (halvings_done += 1)

    Pure `jnp`, so a population carries one `Anneal` per member under `vmap`.
    """
    improved = valid_loss < state.best
    waited = jnp.where(improved, 0, state.waited + 1)
    done = state.halvings >= halvings
    decay = ~done & ((state.halvings > 0) | (waited >= patience))
    scale = jnp.where(done, 0.0, jnp.where(decay, state.scale * factor, state.scale))
    return Anneal(jnp.minimum(state.best, valid_loss), waited,
                  state.halvings + decay.astype(state.halvings.dtype), scale)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    *, jit: bool = True) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """`train_step(state, batch) -> (state, metrics)`; metrics hold the loss,
    the global gradient norm before clipping, and whatever `loss_fn` reports."""

    def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        key, step_key = jax.random.split(state.key)
        (loss, (carry, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, state.carry, step_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
        new_state = TrainState(params, opt_state, state.step + 1,
                               jax.lax.stop_gradient(carry), key)
        return new_state, metrics

    return jax.jit(train_step) if jit else train_step


def evaluate(eval_fn: Callable[[Any, Any, Any], tuple[Any, dict]], params: Any, batches,
             carry: Any = None, weight_key: str = "count") -> dict[str, float]:
    """Run `eval_fn(params, batch, carry) -> (carry, metrics)` over `batches`,
    handing the carry along, and average every metric weighted by
    `metrics[weight_key]` (the number of valid positions in that batch)."""
    totals: dict[str, float] = {}
    weight = 0.0
    for batch in batches:
        carry, metrics = eval_fn(params, batch, carry)
        w = float(metrics[weight_key])
        weight += w
        for name, value in metrics.items():
            if name != weight_key:
                totals[name] = totals.get(name, 0.0) + float(value) * w
    if weight == 0:
        raise ValueError("evaluate: the batches held no valid positions")
    return {name: total / weight for name, total in totals.items()} | {weight_key: weight}
