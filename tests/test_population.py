"""Populations: every member trains exactly as it would alone, a diverging
member stops without stopping the others, and sharding changes nothing."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from recurrax import train
from tests import helpers


def member(tree, m):
    return jax.tree.map(lambda x: x[m], tree)


def test_each_member_trains_as_it_would_alone():
    pop0 = helpers.population_run(steps=0)[0]
    pop, history = helpers.population_run(steps=5)
    lm, windows, loss_fn, _, hyper = helpers.population_setup()
    for m in (0, 3, 4):  # clipped hard, clipped, never clipped
        # alone: optax's own clip_by_global_norm and SGD at this member's rate
        opt = train.make_optimizer(float(hyper["learning_rate"][m]),
                                   clip_norm=float(hyper["clip_norm"][m]))
        state = member(pop0.states, m)
        state = state._replace(opt_state=opt.init(state.params))
        step = train.make_train_step(loss_fn, opt)
        for i in range(5):
            state, metrics = step(state, windows.batch(i))
            np.testing.assert_allclose(history[i, m], float(metrics["loss"]), rtol=2e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6),
                     member(pop.states.params, m), state.params)
    assert not np.any(np.asarray(pop.diverged))
    assert np.all(np.asarray(pop.states.step) == 5)


def test_init_scale_multiplies_every_param():
    """Recurrent kernels start orthogonal; member m's are init_scale[m] times that."""
    pop = helpers.population_run(steps=0)[0]
    _, _, _, _, hyper = helpers.population_setup()
    for m in range(helpers.M):
        W = np.asarray(member(pop.states.params, m)["layers"][0]["W_hi"], np.float64)
        s = hyper["init_scale"][m]
        np.testing.assert_allclose(W.T @ W, s * s * np.eye(helpers.H), atol=1e-5 * s * s)


def drawn_alone(init_params, seed):
    """What `init_params` draws for a member of seed `seed`, called on its own."""
    k_init, _ = jax.random.split(jax.random.PRNGKey(seed))
    return jax.jit(init_params)(k_init)


def test_each_member_starts_as_init_params_alone():
    """Member m's params are init_scale[m] · init_params(key_m): drawn one member at a
    time (no batched QR), the same values as a draw on its own."""
    pop = helpers.population_run(steps=0)[0]
    lm, _, _, _, hyper = helpers.population_setup()
    for m in range(helpers.M):
        expected = jax.tree.map(lambda p, m=m: p * np.float32(hyper["init_scale"][m]),
                                drawn_alone(lm.init, hyper["seeds"][m]))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=0),
                     member(pop.states.params, m), expected)


def test_init_offset_is_not_scaled():
    """With `init_offset` o, member m starts at o + s_m (init_params(key_m) − o): the
    LSTM-b's forget-gate bias of 1 stays 1 at every scale, the rest is scaled around o."""
    from recurrax import models
    from recurrax.train import population
    lm = models.language_model("lstm-b", helpers.V, helpers.H)
    seeds, scale = np.arange(3) + 4, np.array([0.5, 1.0, 3.0])
    offset = jax.tree.map(np.zeros_like, drawn_alone(lm.init, 0))
    offset["layers"][0]["b_f"] = np.ones(helpers.H, np.float32)
    offset["embed"]["E"] = np.full_like(offset["embed"]["E"], 0.25)
    opt = train.make_optimizer(1.0)
    pop = population.init_population(lm.init, opt, seeds=seeds, learning_rate=np.ones(3),
                                     clip_norm=np.ones(3), init_scale=scale, init_offset=offset)
    for m, s in enumerate(scale):
        got = member(pop.states.params, m)
        np.testing.assert_array_equal(got["layers"][0]["b_f"], 1.0)
        expected = jax.tree.map(lambda p, o, s=s: o + s * (p - o), drawn_alone(lm.init, seeds[m]),
                                offset)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                     got, expected)
    with pytest.raises(ValueError, match="init_offset"):
        population.init_population(lm.init, opt, seeds=seeds, learning_rate=np.ones(3),
                                   clip_norm=np.ones(3), init_offset={"embed": 0.0})


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
def test_a_diverging_member_stops_and_the_others_go_on():
    lr = np.array([0.5, 1.0, 0.1, 1e38, 0.3, 0.7])  # member 3 overflows float32 within steps
    clip = np.array([0.5, 1.0, 5.0, 1e30, 1e9, 2.0])
    lm, windows, loss_fn, opt, hyper = helpers.population_setup(lr)
    hyper["clip_norm"] = clip
    from recurrax.train import population
    pop = population.init_population(lm.init, opt, carry=lm.initial_carry((helpers.B,)), **hyper)
    step = population.make_population_step(loss_fn, opt)
    frozen = None
    for i in range(6):
        pop, metrics = step(pop, windows.batch(i))
        if bool(pop.diverged[3]) and frozen is None:
            frozen = member(pop.states.params, 3)
    assert np.asarray(pop.diverged).tolist() == [False, False, False, True, False, False]
    assert 0 <= int(pop.diverged_at[3]) < 6
    assert np.asarray(pop.diverged_at)[[0, 1, 2, 4, 5]].tolist() == [-1] * 5
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 member(pop.states.params, 3), frozen)
    frozen_leaves = jax.tree.leaves(member(pop.states.params, 3))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in frozen_leaves)
    # the same members without the diverging one's rate
    _, reference = helpers.population_run(steps=6)
    losses = np.asarray(metrics["loss"])
    assert np.all(np.isfinite(losses[[0, 1, 2, 4, 5]]))
    np.testing.assert_allclose(losses[[0, 1, 2, 4, 5]], reference[-1][[0, 1, 2, 4, 5]], rtol=2e-5)
    assert np.asarray(pop.states.step).tolist() == [6, 6, 6, int(pop.diverged_at[3]), 6, 6]


SHARDED = """
import json, numpy as np, jax
from recurrax.train import population
from tests import helpers
mesh = population.member_mesh()
pop, sharded = helpers.population_run(steps=4, mesh=mesh)
_, single = helpers.population_run(steps=4)
print(json.dumps({"devices": len(jax.devices()),
                  "spread": len(pop.states.params["readout"]["W"].sharding.device_set),
                  "max_diff": float(np.max(np.abs(sharded - single))),
                  "members": int(pop.clip_norm.shape[0])}))
"""


@pytest.mark.slow  # 13 s; sharding: the two-process test
def test_sharded_over_four_devices_equals_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4 and result["spread"] == 4
    assert result["members"] == 8  # 6 padded up to a multiple of 4
    assert result["max_diff"] < 1e-5


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
def test_many_steps_in_one_call_equal_one_step_at_a_time():
    from recurrax.train import population
    lm, windows, loss_fn, opt, hyper = helpers.population_setup()
    pop0 = population.init_population(lm.init, opt, carry=lm.initial_carry((helpers.B,)), **hyper)
    pop, history = helpers.population_run(steps=5)
    steps = population.make_population_steps(loss_fn, opt)
    together, metrics = steps(pop0, population.stack_batches([windows.batch(i) for i in range(5)]))
    np.testing.assert_allclose(np.asarray(metrics["loss"]), history, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 together.states, pop.states)


def test_each_member_sees_its_own_context():
    """A per-member constant reaches the loss: with L = k_m ‖θ‖², one SGD step
    of rate η (no clipping) gives θ(1 − 2ηk_m) for member m."""
    import jax.numpy as jnp
    import optax

    from recurrax.train import population

    def loss(params, batch, carry, key, k):
        return k * jnp.sum(params["w"] ** 2), (carry, {})

    opt = train.make_optimizer(1.0, base=optax.sgd)
    k = np.array([0.0, 1.0, 3.0], np.float32)
    pop = population.init_population(lambda key: {"w": jnp.ones(2)}, opt, seeds=np.arange(3),
                                     learning_rate=np.full(3, 0.1), clip_norm=np.full(3, 1e6),
                                     context=k)
    pop, _ = population.make_population_step(loss, opt)(pop, {"x": np.zeros(1)})
    np.testing.assert_allclose(pop.states.params["w"][:, 0], 1 - 2 * 0.1 * k, rtol=1e-6)
    with np.testing.assert_raises(ValueError):
        population.init_population(lambda key: {"w": jnp.ones(2)}, opt, seeds=np.arange(3),
                                   learning_rate=np.full(3, 0.1), clip_norm=np.full(3, 1.0),
                                   context=np.zeros(2))


def test_bfloat16_params_are_clipped_and_stay_bfloat16():
    """Each member's clip norm is a float32; bfloat16 gradients are clipped all the
    same and the params keep their dtype. With L = ‖θ‖², θ = 3 · 1₄: g = 6 · 1₄,
    ‖g‖ = 12; member 0 (c = 1) steps by η · 0.5 per entry, member 1 (c = 10⁶) by η · 6."""
    import jax.numpy as jnp
    import optax

    from recurrax.train import population

    def loss(params, batch, carry, key):
        return jnp.sum(params["w"].astype(jnp.float32) ** 2), (carry, {})

    opt = train.make_optimizer(1.0, base=optax.sgd)
    pop = population.init_population(lambda key: {"w": jnp.full(4, 3.0, jnp.bfloat16)}, opt,
                                     seeds=np.arange(2), learning_rate=np.full(2, 0.1),
                                     clip_norm=np.array([1.0, 1e6]))
    pop, metrics = population.make_population_step(loss, opt)(pop, {"x": np.zeros(1)})
    w = pop.states.params["w"]
    assert w.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(metrics["grad_norm"], np.float32), [12.0, 12.0])
    np.testing.assert_allclose(np.asarray(w, np.float32),
                               [[3 - 0.1 * 0.5] * 4, [3 - 0.1 * 6] * 4], rtol=1e-2)


# Member m: θ ∈ R³, L = k_m ‖θ‖² (k_m its context), SGD at rate η_m with the
# gradient clipped to c_m; member 3's rate overflows θ on the first step.
PROCESS = """
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
from recurrax import train
from recurrax.train import population
loss = lambda params, batch, carry, key, k: (k * jnp.sum(params["w"] ** 2), (carry, {}))
opt = train.make_optimizer(1.0, base=optax.sgd)
pop = population.init_population(
    lambda key: {"w": jax.random.normal(key, (3,))}, opt, seeds=np.arange(4),
    learning_rate=np.array([0.1, 0.2, 0.05, 1e38]), clip_norm=np.array([1e6, 0.5, 1e6, 1e6]),
    context=np.array([1.0, 2.0, 3.0, 1e3], np.float32))
mesh = population.member_mesh()
start = population.to_host(pop.states.params["w"])
pop = population.shard_members(pop, mesh)
batch = population.replicate({"x": np.zeros(2, np.float32)}, mesh)
step = population.make_population_step(loss, opt)
for _ in range(2):
    pop, metrics = step(pop, batch)
w = pop.states.params["w"]
print(json.dumps({
    "devices": len(jax.devices()), "spread": len(w.sharding.device_set),
    "own_rows": sorted(s.index[0].start for s in w.addressable_shards),
    "batch_whole_here": all(s.data.shape == (2,) for s in batch["x"].addressable_shards),
    "start": start.tolist(), "w": population.to_host(w).tolist(),
    "loss": population.to_host(metrics["loss"]).tolist(),
    "diverged": population.to_host(pop.diverged).tolist(),
    "diverged_at": population.to_host(pop.diverged_at).tolist()}))
"""


def test_members_sharded_over_two_processes_train_as_numpy_says():
    """Two processes of two CPU devices each (gloo): each process holds only its
    members, every process gathers all of them, and the two steps are those of
    NumPy (clipping and divergence included)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, address, str(i)], cwd=root,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert [g["own_rows"] for g in got] == [[0, 1], [2, 3]]  # each process its own members
    assert all(g["devices"] == 4 and g["spread"] == 4 and g["batch_whole_here"] for g in got)
    for key in ("start", "w", "loss", "diverged", "diverged_at"):
        assert got[0][key] == got[1][key], key  # every process gathers the same whole
    w = np.array(got[0]["start"], np.float64)
    k, lr, clip = np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.05]), np.array([1e6, 0.5, 1e6])
    for _ in range(2):
        loss = k * np.sum(w[:3] ** 2, axis=1)
        g = 2 * k[:, None] * w[:3]
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        g = np.where(norm < clip[:, None], g, g / norm * clip[:, None])
        w[:3] = w[:3] - lr[:, None] * g
    np.testing.assert_allclose(np.array(got[0]["w"])[:3], w[:3], rtol=1e-5)
    np.testing.assert_allclose(np.array(got[0]["loss"])[:3], loss, rtol=1e-5)
    assert got[0]["diverged"] == [False, False, False, True]
    assert got[0]["diverged_at"] == [-1, -1, -1, 0]
    np.testing.assert_array_equal(got[0]["w"][3], got[0]["start"][3])  # kept its last finite


def test_to_host_in_one_process_is_numpy():
    from recurrax.train import population
    tree = {"a": jax.numpy.arange(3.0), "b": (np.int32(4), None)}
    host = population.to_host(tree)
    assert isinstance(host["a"], np.ndarray) and host["a"].tolist() == [0.0, 1.0, 2.0]
    assert host["b"][0] == 4 and host["b"][1] is None
