"""The XLA CPU batched-LAPACK deadlock (jaxlib 0.10.0–0.10.2), standalone: jax and numpy only.

    python tests/lapack_stall_reproducer.py --mode batched|unbatched --seconds N [--stall S]

A jitted init of 24 members, each drawing 8 orthogonal 24×24 matrices, runs in a loop: the members
`vmap`-ed (`batched`: 8 QRs of batch 24 per call) or `lax.map`-ed (`unbatched`: one QR at a time,
as recurrax draws). A watcher thread reads the process's CPU time; none used for `--stall`
seconds is a stall (the process is wedged: XLA's intra-op workers all wait for QR chunks that no
worker is left to run). The process is held to `--cpus` CPUs (the pool's size) before jax starts.
Exit status 0: no stall within `--seconds`; 3: stalled. Prints the versions and the iterations.
"""

import argparse
import os
import threading
import time

STALLED = 3


def watch(stall: float, count: list) -> None:
    """Exit with `STALLED` once the process has used no CPU (< 0.05 s) for `stall` seconds."""
    mark_wall, mark_cpu = time.monotonic(), sum(os.times()[:2])
    while True:
        time.sleep(0.5)
        wall, cpu = time.monotonic(), sum(os.times()[:2])
        if cpu - mark_cpu > 0.05:
            mark_wall, mark_cpu = wall, cpu
        elif wall - mark_wall > stall:
            print(f"STALLED at iteration {count[0]}: no CPU for {wall - mark_wall:.0f} s",
                  flush=True)
            os._exit(STALLED)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument("--mode", choices=("batched", "unbatched"), required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--stall", type=float, default=12.0)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cpus])
    import jax
    import jax.numpy as jnp
    from jaxlib.version import __version__ as jaxlib_version

    print(f"jax {jax.__version__} jaxlib {jaxlib_version} mode {args.mode} "
          f"cpus {len(os.sched_getaffinity(0))}", flush=True)
    orthogonal = jax.nn.initializers.orthogonal()

    def member(key):  # 8 orthogonal matrices, each its own QR (as a cell's W_h*)
        return jnp.stack([orthogonal(k, (24, 24)) for k in jax.random.split(key, 8)])

    over = jax.vmap if args.mode == "batched" else (lambda f: lambda xs: jax.lax.map(f, xs))
    init = jax.jit(lambda i: over(member)(jax.random.split(jax.random.PRNGKey(i), 24)))
    count = [0]
    threading.Thread(target=watch, args=(args.stall, count), daemon=True).start()
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        out = init(count[0])  # dispatched asynchronously; wait for every 16th
        if count[0] % 16 == 15:
            out.block_until_ready()
        count[0] += 1
    print(f"no stall in {count[0]} iterations ({time.monotonic() - start:.0f} s)", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
