"""The rule behind `scan(kernel=None)` and the kernels' goal, read off a GPU
run of `benchmarks/gpu.sh` (part 6): for every (batch, hidden) of the lstm
forward+backward float32 grid, the fused kernel's tokens/s over `lax.scan`
recurrax's and over the faster cuDNN path (JAX or PyTorch).

    python -m benchmarks.kernel_rule results/bench/gpu/scan.jsonl [--run-id ID]
                                     [--margin 1.05]

Prints a Markdown table, the goal's status (forward+backward at least 1.0x
the faster cuDNN path at every shape and 1.5x at batch 1) and the value of
`recurrax.scan.PALLAS_FASTER` it implies: the pairs where the kernel beat
`lax.scan` by at least `--margin`. Writes nothing else; copying the set into
recurrax/scan.py is a decision for a person with the table in front of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.report import load

CUDNN = ("jax-cudnn", "torch")


def rows(records: list[dict]) -> dict[tuple[int, int], dict[str, float]]:
    """`{(B, H): {impl: tokens/s}}` for lstm, forward+backward, float32, on a
    GPU (the last measurement of each wins; a CPU smoke run gives none)."""
    out: dict[tuple[int, int], dict[str, float]] = {}
    for r in records:
        if (r.get("kind") == "throughput" and r.get("cell") == "lstm"
                and r.get("backend", "gpu") == "gpu"
                and r.get("pass") == "forward+backward" and r.get("dtype") == "float32"):
            out.setdefault((r["B"], r["H"]), {})[r["impl"]] = r["tokens_per_s"]
    return out


def analyse(table: dict[tuple[int, int], dict[str, float]], margin: float) -> dict:
    """Per shape: kernel / lax.scan and kernel / best cuDNN; the goal's status
    and the implied `PALLAS_FASTER`."""
    shapes, faster, goal_met, measured = [], set(), True, False
    for (B, H), speed in sorted(table.items()):
        kernel, scan = speed.get("recurrax-pallas"), speed.get("recurrax")
        cudnn = max((speed[i] for i in CUDNN if i in speed), default=None)
        over_scan = kernel / scan if kernel and scan else None
        over_cudnn = kernel / cudnn if kernel and cudnn else None
        if over_scan is not None and over_scan >= margin:
            faster.add((B, H))
        if over_cudnn is not None:
            measured = True
            goal_met &= over_cudnn >= (1.5 if B == 1 else 1.0)
        shapes.append({"B": B, "H": H, "over_scan": over_scan, "over_cudnn": over_cudnn})
    return {"shapes": shapes, "pallas_faster": sorted(faster),
            "goal": "met" if measured and goal_met else "not met" if measured else "unmeasured"}


def markdown(result: dict) -> str:
    def ratio(x):
        return "–" if x is None else f"{x:.2f}"

    lines = ["| B | H | kernel / lax.scan | kernel / faster cuDNN |", "| --- | --- | --- | --- |"]
    lines += [f"| {s['B']} | {s['H']} | {ratio(s['over_scan'])} | {ratio(s['over_cudnn'])} |"
              for s in result["shapes"]]
    lines.append(f"\nGoal (>= 1.0x the faster cuDNN everywhere, 1.5x at B=1): {result['goal']}.")
    pairs = ", ".join(f"({b}, {h})" for b, h in result["pallas_faster"])
    lines.append(f"PALLAS_FASTER = frozenset({{{pairs}}})")
    return "\n".join(lines)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("jsonl", type=Path)
    p.add_argument("--run-id", default=None)
    p.add_argument("--margin", type=float, default=1.05)
    args = p.parse_args(argv)
    if not args.jsonl.is_file():
        p.error(f"{args.jsonl} is not a file")
    if args.margin <= 0:
        p.error("--margin must be positive")
    text = markdown(analyse(rows(load(args.jsonl, args.run_id)), args.margin))
    print(text)
    return text


if __name__ == "__main__":
    main()
