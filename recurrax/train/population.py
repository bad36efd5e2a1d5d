r"""Populations: many models trained together in one compiled program.

Members share shapes (architecture, hidden size, layers) and the stream of
minibatches, and differ in their per-member arrays: PRNG seed (hence
initialisation and dropout), initialisation scale, learning rate and gradient
clip. One `train_step` is `jax.vmap`-ed over the member axis and `jit`-ed
once; the member axis can be sharded over `jax.devices()`.

Per member m, each step:

    g = ∇θ L(θ_m),   g ← g · min(1, c_m / ‖g‖₂),   θ_m ← θ_m + opt(g; η_m)

with the clipping of `train.make_optimizer(clip_norm=…)`, optax's
`clip_by_global_norm`, at each member's own c_m.

Members may also differ in constants that are not trained: `context`, a
pytree with a leading member axis (e.g. each member's architecture, a
`recurrax.search.universal.Program`), handed to the loss as its fifth argument.

A member whose loss, gradient norm or new params are not finite is marked
diverged at that step: it keeps its last finite params and never updates
again, while the others go on.

`init_population` draws the members one after another (`lax.map`), not
`vmap`-ed: a `vmap`-ed draw turns each orthogonal initialiser's QR into one
batched LAPACK call, and on jaxlib 0.10.0–0.10.2 two such calls at once can
deadlock XLA CPU's intra-op pool (every worker waits for chunks that no worker
is left to run). Unbatched QRs run inline; the values are the same.

Several processes (hosts, after `jax.distributed.initialize()`): `member_mesh`
spans every process's devices (`jax.devices()` is global), `shard_members` and
`replicate` give each process the shards on its own devices of a value that
every process holds whole (all processes build the same population from the
same seeds and read the same batches), and `to_host` gathers a sharded result
back, whole, on every process. The steps themselves are unchanged: one program,
run by every process on its share of the members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding

from recurrax.train import step as train
from recurrax.train.step import TrainState

# `loss_fn(params, batch, carry, key[, context]) -> (loss, (carry, metrics))`: a
# `train.LossFn`, given the member's `context` as a fifth argument when the
# population has one.
MemberLossFn = Callable[..., tuple[jax.Array, tuple[Any, dict]]]


class Population(NamedTuple):
    """`states`: a `TrainState` whose leaves have a leading member axis `[M, ...]`;
    `clip_norm[M]`; `diverged[M]` (bool); `diverged_at[M]` (the step, or −1);
    `context`: per-member constants (`None`, or a pytree of `[M, ...]` leaves)."""

    states: TrainState
    clip_norm: jax.Array
    diverged: jax.Array
    diverged_at: jax.Array
    context: Any = None


def _finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def init_population(
    init_params: Callable[[jax.Array], Any],
    optimizer: optax.GradientTransformation,
    *,
    seeds: np.ndarray,
    learning_rate: np.ndarray,
    clip_norm: np.ndarray,
    init_scale: np.ndarray | None = None,
    init_offset: Any = None,
    carry: Any = None,
    context: Any = None,
) -> Population:
    """Members with their own `seeds[M]`, `learning_rate[M]`, `clip_norm[M]`
    and `init_scale[M]`. Member m's params, with `p_m = init_params(key_m)`
    (`key_m` from `seeds[m]`) and `s_m = init_scale[m]` (default 1), are

        θ_m = s_m · p_m                              (init_offset=None)
        θ_m = o + s_m · (p_m − o)                    (init_offset=o)

    so an offset `o` (a pytree like the params, leaves broadcastable to
    theirs) is not scaled: e.g. the LSTM's forget-gate bias of 1 in `o` stays 1
    while the draws around it are scaled. `optimizer` comes from
    `train.make_optimizer` (its learning rate is set per member). `carry` is
    one member's carry; `context` the members' constants (leaves `[M, ...]`),
    if any. Members are drawn one at a time (module docstring: no batched
    LAPACK calls), each exactly as `init_params(key_m)` alone."""
    seeds = np.asarray(seeds)
    M = len(seeds)
    _check_member_arrays(M, learning_rate=learning_rate, clip_norm=clip_norm,
                         init_scale=init_scale)
    _check_context(M, context)
    scale = np.ones(M) if init_scale is None else np.asarray(init_scale)

    def member(seed, lr, s):
        key = jax.random.PRNGKey(seed)
        k_init, k_run = jax.random.split(key)
        params = _scaled(init_params(k_init), s, init_offset)
        state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), carry, k_run)
        return state._replace(opt_state=train.set_learning_rate(state.opt_state, lr))

    members = (jnp.asarray(seeds, jnp.uint32), jnp.asarray(learning_rate, jnp.float32),
               jnp.asarray(scale, jnp.float32))
    states = jax.jit(lambda xs: jax.lax.map(lambda x: member(*x), xs))(members)
    return Population(states, jnp.asarray(clip_norm, jnp.float32), jnp.zeros(M, bool),
                      jnp.full(M, -1, jnp.int32), jax.tree.map(jnp.asarray, context))


def _check_member_arrays(M: int, **arrays) -> None:
    """Each of `arrays` (or `None`) has shape `(M,)`, one entry per member."""
    for name, a in arrays.items():
        if a is not None and np.shape(a) != (M,):
            raise ValueError(f"init_population: {name} must have shape ({M},) like seeds, "
                             f"got {np.shape(a)}")


def _check_context(M: int, context: Any) -> None:
    """Every leaf of `context` has a leading member axis of length `M`."""
    for leaf in jax.tree.leaves(context):
        if np.shape(leaf)[:1] != (M,):
            raise ValueError(f"init_population: every context leaf must have shape ({M}, ...) "
                             f"like seeds, got {np.shape(leaf)}")


def _scaled(params: Any, s: jax.Array, offset: Any) -> Any:
    """`s · params`, or `offset + s · (params − offset)` (leaf by leaf, in each
    param's dtype) when `offset` is not `None`."""
    if offset is None:
        return jax.tree.map(lambda p: p * s.astype(p.dtype), params)
    if jax.tree.structure(offset) != jax.tree.structure(params):
        raise ValueError(f"init_population: init_offset must be a pytree like the params, "
                         f"got {jax.tree.structure(offset)} for params "
                         f"{jax.tree.structure(params)}")

    def one(p, o):
        o = jnp.asarray(o, p.dtype)
        return o + (p - o) * s.astype(p.dtype)

    return jax.tree.map(one, params, offset)


def make_population_step(loss_fn: MemberLossFn, optimizer: optax.GradientTransformation
                         ) -> Callable[[Population, Any], tuple[Population, dict]]:
    """`step(population, batch) -> (population, metrics[M])`, one `jit` for all
    members; `loss_fn` as for `train.make_train_step`, called with the
    member's `context` as a fifth argument when the population has one. The
    batch is shared."""

    def member_step(state: TrainState, clip, diverged, diverged_at, context, batch):
        key, step_key = jax.random.split(state.key)
        extra = () if context is None else (context,)
        (loss, (carry, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, state.carry, step_key, *extra)
        norm = optax.tree.norm(grads)
        grads = _clip_by_global_norm(grads, clip)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        bad = ~(jnp.isfinite(loss) & jnp.isfinite(norm) & _finite(params))
        now = diverged | bad
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(now, o, n), new, old)
        new = TrainState(keep(params, state.params), keep(opt_state, state.opt_state),
                         state.step + jnp.where(now, 0, 1).astype(state.step.dtype),
                         keep(jax.lax.stop_gradient(carry), state.carry), key)
        at = jnp.where(bad & ~diverged, state.step, diverged_at)
        return new, now, at, {**metrics, "loss": loss, "grad_norm": norm}

    vmapped = jax.vmap(member_step, in_axes=(0, 0, 0, 0, 0, None))

    @jax.jit
    def step(pop: Population, batch: Any):
        states, diverged, at, metrics = vmapped(pop.states, pop.clip_norm, pop.diverged,
                                                pop.diverged_at, pop.context, batch)
        return Population(states, pop.clip_norm, diverged, at, pop.context), metrics

    return step


def _clip_by_global_norm(grads: Any, max_norm: jax.Array) -> Any:
    """`optax.clip_by_global_norm(max_norm)`, the clipping of
    `train.make_optimizer(clip_norm=…)`, at a traced norm (each member its own):

        g ← g                   if ‖g‖₂ < c
        g ← (g / ‖g‖₂) · c      otherwise

    Given a traced float32 `c`, optax cannot keep a narrower leaf's dtype (for
    bfloat16 its `lax.select` refuses the mix of dtypes), so such leaves are
    clipped in float32 and cast back; float32 gradients go through optax
    untouched."""
    wide = jax.tree.map(lambda g: g.astype(jnp.promote_types(g.dtype, max_norm.dtype)), grads)
    clipped, _ = optax.clip_by_global_norm(max_norm).update(wide, optax.EmptyState())
    return jax.tree.map(lambda c, g: c.astype(g.dtype), clipped, grads)


def make_population_steps(loss_fn: MemberLossFn, optimizer: optax.GradientTransformation
                          ) -> Callable[[Population, Any], tuple[Population, dict]]:
    """`steps(population, batches) -> (population, metrics[K, M])`: K steps of
    `make_population_step` in one compiled call, a `lax.scan` over the leading
    axis of every leaf of `batches` (batch k is `batches[k]`). The arithmetic is
    that of K calls of `step`; only the number of dispatches changes (one
    instead of K), which matters when a step takes milliseconds."""
    step = make_population_step(loss_fn, optimizer)

    @jax.jit
    def steps(pop: Population, batches: Any):
        return jax.lax.scan(step, pop, batches)

    return steps


def stack_batches(batches: list[Any]) -> Any:
    """`[batch_0, …, batch_{K−1}]` (equal shapes) as one tree with a leading
    axis K, the input of `make_population_steps`."""
    return jax.tree.map(lambda *leaves: np.stack(leaves), *batches)


def member_mesh(devices=None) -> Mesh:
    """A one-axis mesh, `"members"`, over `devices` (default: all of them, those
    of every process when several run together)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("members",))


def _place(x: Any, sharding: Sharding) -> jax.Array:
    """`x` placed with `sharding`. On devices of several processes, each
    process puts its own shards from its whole copy of `x`
    (`jax.make_array_from_callback`), with no cross-process check or transfer:
    every process must hold the same `x`. An array already spread over the
    processes is moved with `jax.device_put`."""
    if sharding.is_fully_addressable or (isinstance(x, jax.Array)
                                         and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    whole = np.asarray(x)
    return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])


def shard_members(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf's leading (member) axis across the mesh; the member
    count must be a multiple of the device count (see `pad_members`). On a
    mesh over several processes, every process passes the same whole `tree`
    and keeps the members on its own devices."""
    sharding = NamedSharding(mesh, PartitionSpec("members"))
    return jax.tree.map(lambda x: _place(x, sharding), tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a whole copy of every leaf on each device (e.g. the shared batch);
    on several processes, every process passes the same `tree`."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: _place(x, sharding), tree)


def to_host(tree: Any) -> Any:
    """Every leaf as a NumPy array of its whole value, on every process. A
    leaf spread over several processes' devices is gathered
    (`multihost_utils.process_allgather`), a collective: every process must
    call `to_host` on the same arrays in the same order. Elsewhere it is
    `np.asarray`."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def pad_members(values: np.ndarray, multiple: int) -> np.ndarray:
    """`values[M]` extended by repeating its last entry up to a multiple of
    `multiple` (padding members are trained and then ignored)."""
    values = np.asarray(values)
    extra = (-len(values)) % multiple
    return np.concatenate([values, np.repeat(values[-1:], extra)]) if extra else values
