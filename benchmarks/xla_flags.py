"""Measure XLA CPU flags (and malloc settings) on recurrax's scan: each set
runs in its own process (XLA reads `XLA_FLAGS` once, at start-up), timing recurrax `lstm`
forward+backward side by side with PyTorch `nn.LSTM`, which the flags do not
touch. Comparing processes directly would mix the flag's effect with the
machine's noise; the speed ratio recurrax / PyTorch within each process does
not, so a flag's effect is that ratio over the ratio of the default process.

    python -m benchmarks.xla_flags [--rounds 5] [--shapes 32,128,128,256 ...] [--sets NAME ...]

Prints a Markdown table (recurrax / PyTorch per shape, and that over the
default's) and one JSON line per flag set. Needs PyTorch (the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

#: (name, environment). The first is the reference. The XLA flags were taken
#: from jaxlib 0.10.2's flag list (some of its names are not flags: those runs
#: fail and say so); what they do is XLA's business, we only time them. The
#: malloc settings keep freed memory in glibc's heap instead of returning it to
#: the kernel, so large temporaries do not page-fault afresh on every call
#: (they apply to PyTorch in the same process too).
FLAG_SETS = (
    ("default", {}),
    ("YNNPACK fusion off", {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}),
    ("fast math", {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}),
    ("concurrency scheduler",
     {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}),
    ("one Eigen thread", {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}),
    ("oneDNN", {"XLA_FLAGS": "--xla_cpu_use_onednn=true"}),
    ("XNNPACK", {"XLA_FLAGS": "--xla_cpu_use_xnnpack=true"}),
    ("no fusion emitters", {"XLA_FLAGS": "--xla_cpu_use_fusion_emitters=false"}),
    ("vector width 256", {"XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"}),
    ("malloc keeps freed memory",
     {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}),
)

SHAPES = ("1,512,128,256", "32,128,128,256", "64,256,256,512")  # B,T,D,H


def child(shapes: list[str], rounds: int) -> dict:
    """In a process started with one flag set: tokens/s of recurrax and
    PyTorch at every shape, timed round-robin."""
    from benchmarks import peers
    from benchmarks.timing import interleaved_medians, median

    out = {}
    for text in shapes:
        shape = peers.Shape(*map(int, text.split(",")))
        thunks = {impl: peers.build(impl, "lstm", shape, "float32", backward=True)
                  for impl in ("recurrax", "torch")}
        times = interleaved_medians(thunks, rounds=rounds)
        out[text] = {impl: shape.B * shape.T / median(ts) for impl, ts in times.items()}
    return out


def run_flag_set(settings: dict, shapes: list[str], rounds: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | settings
    cmd = [sys.executable, "-m", "benchmarks.xla_flags", "--child",
           "--rounds", str(rounds), "--shapes", *shapes]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        unknown = [line for line in lines if "Unknown flag" in line]
        return {"error": "unknown to this jaxlib" if unknown else lines[-1][-120:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument("--sets", nargs="+", metavar="NAME",
                        help="only these sets (by name); the default always runs first")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.shapes, args.rounds)))
        return []
    print("recurrax lstm forward+backward / PyTorch nn.LSTM, tokens/s ratio in one process;"
          " in brackets, over the default's ratio")
    print("| flags | " + " | ".join(args.shapes) + " |\n| --- |" + " --- |" * len(args.shapes))
    rows, base = [], None
    chosen = [(n, e) for k, (n, e) in enumerate(FLAG_SETS)
              if k == 0 or not args.sets or n in args.sets]
    for name, settings in chosen:
        speeds = run_flag_set(settings, args.shapes, args.rounds)
        row = {"name": name, "environment": settings, **speeds}
        rows.append(row)
        if "error" in speeds:
            print(f"| {name} | failed: {speeds['error']} |", flush=True)
            continue
        ratios = {s: v["recurrax"] / v["torch"] for s, v in speeds.items()}
        base = base or ratios
        row["recurrax_over_torch"] = {s: round(r, 3) for s, r in ratios.items()}
        row["over_default"] = {s: round(r / base[s], 3) for s, r in ratios.items()}
        print(f"| {name} | " + " | ".join(
            f"{ratios[s]:.2f} ({ratios[s] / base[s]:.2f})" for s in args.shapes) + " |",
            flush=True)
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
