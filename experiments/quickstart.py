"""The README's quick start, runnable: `python -m experiments.quickstart`.

Builds each of the ten cells, runs a variable-length batch through
`recurrax.scan`, takes a gradient, and prints what came out. It takes no
options (any argument is refused, `--help` says so).
"""

import argparse
import time

import jax
import jax.numpy as jnp

import recurrax


def main(argv=None) -> None:
    argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0]).parse_args(argv)
    T, B, D, H = 100, 8, 32, 32
    key_p, key_x = jax.random.split(jax.random.key(0))
    xs = jax.random.normal(key_x, (T, B, D))           # [T, batch, D]: time-major
    lengths = jnp.arange(T, T - 8 * 10, -10)           # 100, 90, ..., 30
    print(f"{'cell':7s} {'params':>7s} {'mean y²':>8s} {'|grad|':>8s} {'seconds':>8s}")
    for name in recurrax.cells.NAMES:
        cell = recurrax.cells.get(name, H)
        params = cell.init(key_p, D)

        def loss(params, cell=cell):
            carry, ys = recurrax.scan(cell, params, xs, lengths=lengths)
            return jnp.mean(ys ** 2)

        start = time.perf_counter()
        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        grad_norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads)))
        n_params = sum(p.size for p in jax.tree.leaves(params))
        print(f"{name:7s} {n_params:7d} {float(value):8.4f} {float(grad_norm):8.4f} "
              f"{time.perf_counter() - start:8.2f}")


if __name__ == "__main__":
    main()
