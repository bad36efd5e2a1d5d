"""Measure the rule behind `scan(hoist=None)`: hoisted against in-loop input
projections for `lstm(H)` over a range of batch sizes, forward+backward,
timed side by side.

    python -m benchmarks.hoist_rule [--hidden 256 --inputs 128 --steps 128]

Prints a Markdown table (tokens/s and the ratio hoisted / in-loop per batch
size) and one JSON line per batch size.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.scan_variants import tokens_per_s

VARIANTS = {"hoisted": {"hoist": True}, "in_loop": {"hoist": False}}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--inputs", type=int, default=128)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    T, D, H = args.steps, args.inputs, args.hidden
    rows = []
    print(f"lstm({H}), D={D}, T={T}, forward+backward, tokens/s (median of {args.rounds})")
    print("| batch | hoisted | in loop | hoisted / in loop |\n| --- | --- | --- | --- |")
    for B in args.batches:
        speed = tokens_per_s(B, T, D, H, VARIANTS, args.rounds)
        row = {"B": B, "T": T, "D": D, "H": H}
        for name, v in speed.items():
            row[f"{name}_tokens_per_s"] = round(v)
        row["hoisted_over_in_loop"] = round(speed["hoisted"] / speed["in_loop"], 3)
        rows.append(row)
        print(f"| {B} | {row['hoisted_tokens_per_s']} | {row['in_loop_tokens_per_s']} | "
              f"{row['hoisted_over_in_loop']} |", flush=True)
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
