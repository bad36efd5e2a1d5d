"""Measure `scan(unroll=k)` for `lstm(H)` at the three reference shapes of
issue 5, forward+backward, timed side by side (default hoist rule).

    python -m benchmarks.unroll_rule [--unrolls 1 2 4]

Prints a Markdown table (tokens/s per unroll and each one's speed over
unroll 1) and one JSON line per shape.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.scan_variants import tokens_per_s

SHAPES = ((1, 512, 128, 256), (32, 128, 128, 256), (64, 256, 256, 512))  # B, T, D, H


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--unrolls", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    variants = {f"unroll_{u}": {"unroll": u} for u in args.unrolls}
    first = f"unroll_{args.unrolls[0]}"
    print(f"lstm forward+backward, tokens/s (median of {args.rounds}); ratios over {first}")
    print("| B, T, D, H | " + " | ".join(variants) + " |\n| --- |" + " --- |" * len(variants))
    rows = []
    for B, T, D, H in SHAPES:
        speed = tokens_per_s(B, T, D, H, variants, args.rounds)
        row = {"B": B, "T": T, "D": D, "H": H,
               **{f"{name}_tokens_per_s": round(v) for name, v in speed.items()},
               **{f"{name}_over_{first}": round(v / speed[first], 3) for name, v in speed.items()}}
        rows.append(row)
        print(f"| {B}, {T}, {D}, {H} | " + " | ".join(
            f"{round(v)} ({v / speed[first]:.2f})" for v in speed.values()) + " |", flush=True)
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
