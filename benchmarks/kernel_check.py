"""The fused kernels on the device they were compiled for, checked against
`recurrax.scan` before anything is timed: values and gradients of every gated
cell, float32 and bfloat16 matmuls, with lengths and reverse.

    python -m benchmarks.kernel_check [--batch 16] [--steps 32] [--hidden 256]
                                      [--out results/bench/kernel_check.jsonl]

One JSON line per cell and precision (`max_relative_error` of outputs and
gradients against `recurrax.scan` in float32 at the highest matmul precision,
or the failure), appended and flushed as it goes. On a CPU it runs the kernels
in Pallas's interpreter (the tests do the same with exact float64 checks).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import recurrax
from benchmarks import peers
from recurrax import kernels
from recurrax.train.results import ResultsFile

CELLS = ("lstm", "lstm-i", "lstm-f", "lstm-o", "lstm-b", "gru", "gru-reset-after", "mut1",
         "mut2", "mut3")


def outputs_and_grads(run, cell, params, xs, lengths):
    def loss(params, xs):
        _, ys = run(cell, params, xs, lengths=lengths, reverse=True)
        return jnp.sum(jnp.sin(ys.astype(jnp.float32))), ys

    (_, ys), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, xs)
    return jax.tree.map(lambda a: np.asarray(a, np.float64), (ys, grads))


def relative_error(got, want) -> float:
    return max(float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-30))
               for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True))


def check(name: str, B: int, T: int, H: int, matmul_dtype) -> dict:
    reset_after = name == "gru-reset-after"
    cell = peers.recurrax_cell("gru" if reset_after else name, H, reset_after)
    D = H if name in ("mut1", "mut2") else H // 2
    params = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (T, B, D))
    lengths = jnp.asarray(np.random.default_rng(2).integers(0, T + 1, B))
    interpret = jax.default_backend() != "gpu"

    def fused(*args, **kw):
        return kernels.scan(*args, matmul_dtype=matmul_dtype, interpret=interpret, **kw)

    with jax.default_matmul_precision("highest"):
        want = outputs_and_grads(recurrax.scan, cell, params, xs, lengths)
    start = time.perf_counter()
    got = outputs_and_grads(fused, cell, params, xs, lengths)
    return {"max_relative_error": relative_error(got, want),
            "first_call_s": round(time.perf_counter() - start, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--out", type=Path, default=Path("results/bench/kernel_check.jsonl"))
    p.add_argument("--run-id", default=None)
    args = p.parse_args(argv)
    cells = [c for c in args.cells.split(",") if c]
    unknown = sorted(set(cells) - set(CELLS))
    if unknown or min(args.batch, args.steps, args.hidden) < 1:
        p.error(f"unknown cells {unknown}" if unknown else "sizes must be positive")
    out = ResultsFile(args.out)
    failures = 0
    for name in cells:
        for precision, matmul_dtype in (("float32", None), ("bfloat16", jnp.bfloat16)):
            record = {"kind": "kernel_check", "cell": name, "matmul_dtype": precision,
                      "B": args.batch, "T": args.steps, "H": args.hidden,
                      "backend": jax.default_backend(), "run_id": args.run_id,
                      "device": jax.devices()[0].device_kind}
            try:
                record.update(check(name, args.batch, args.steps, args.hidden, matmul_dtype))
            except Exception as err:  # noqa: BLE001 - a failing cell is recorded, not fatal
                failures += 1
                record["failed"] = f"{type(err).__name__}: {str(err)[:500]}"
            out.append(record)
            print(name, precision, record.get("max_relative_error", record.get("failed")),
                  flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
