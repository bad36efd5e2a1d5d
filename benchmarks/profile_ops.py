"""Where the time of one recurrax call goes on XLA CPU: a per-operation
profile from XLA's own trace events (`jax.profiler`, with
`--xla_cpu_enable_xprof_traceme=true`), joined with the compiled HLO to tell
matmuls from the rest, and the loop's body from the code around it.

    python -m benchmarks.profile_ops [--shape 32,128,128,256] [--cell lstm] \
        [--pass fwd+bwd] [--hoist auto]

Prints, per call: the time of the matmuls inside the loop (with their shapes
and GFLOP/s), of the other operations inside the loop (how many per step and
their mean time each), and of everything outside the loop; then the ten
costliest operations. The profiler adds a little time per operation, so the
operations' times are a few percent above an untraced call's, and XLA may
run independent operations at the same time (one per core), so their sum can
exceed the wall-clock time, which is printed too.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from typing import Any

FLAG = "--xla_cpu_enable_xprof_traceme=true"


def compiled_hlo(jitted, args) -> str:
    """The optimised HLO text of `jitted` compiled for `args`."""
    text = jitted.lower(*args).compile().as_text()
    if text is None:
        raise RuntimeError("this backend gives no text for a compiled program")
    return text


def parse_hlo(text: str) -> dict:
    """instruction name -> {"computation", "op", "flops", "type", "in_loop"}
    from compiled HLO text, for the operations that run as their own step
    (not those inside a fusion); a fusion's FLOPs are those of the dots it
    calls."""
    comps, current = {}, None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head and not line.startswith(" "):
            current = head.group(1)
            comps[current] = []
            continue
        inst = re.match(r"^\s+(?:ROOT )?%([\w.\-]+) = (\S+) (\w[\w\-]*)\((.*)", line)
        if inst and current:
            comps[current].append((inst.group(1), inst.group(2), inst.group(3), line))
    shapes = {name: typ for insts in comps.values() for name, typ, _, _ in insts}
    flops_of = {c: sum(_dot_flops(line, typ, shapes) for _, typ, op, line in insts
                       if op == "dot") for c, insts in comps.items()}
    fused = set(re.findall(r"calls=%([\w.\-]+)", text))  # their ops run inside one fusion
    out = {}
    for comp, insts in comps.items():
        if comp in fused:
            continue
        for name, typ, op, line in insts:
            called = re.search(r"calls=%([\w.\-]+)", line)
            flops = _dot_flops(line, typ, shapes) if op == "dot" else (
                flops_of.get(called.group(1), 0.0) if called else 0.0)
            out[name] = {"computation": comp, "op": op, "flops": flops, "type": typ}
    bodies = set(re.findall(r"body=%([\w.\-]+)", text))
    for info in out.values():
        info["in_loop"] = info["computation"] in bodies
    return out


def _dims(typ: str) -> list[int]:
    m = re.match(r"\w+\[([\d,]*)\]", typ)
    return [int(d) for d in m.group(1).split(",") if d] if m else []


def _dot_flops(line: str, typ: str, shapes: dict) -> float:
    """2 · (output elements) · (contracted size) of one HLO dot."""
    lhs = re.search(r"dot\(%([\w.\-]+)", line)
    contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
    if not lhs or not contract or lhs.group(1) not in shapes:
        return 0.0
    lhs_dims = _dims(shapes[lhs.group(1)])
    k = 1
    for d in contract.group(1).split(","):
        if d:
            k *= lhs_dims[int(d)]
    n = 1
    for d in _dims(typ):
        n *= d
    return 2.0 * n * k


def profile(fn, args, calls: int = 3) -> tuple[dict[str, tuple[float, float]], float]:
    """(op name -> (total µs per call, events per call) over `calls` traced
    calls, and the median wall-clock µs of an untraced call)."""
    import statistics
    import time

    import jax

    jax.block_until_ready(fn(*args))
    walls = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - start)
    folder = tempfile.mkdtemp(prefix="recurrax-profile-")
    with jax.profiler.trace(folder, create_perfetto_trace=True):
        for _ in range(calls):
            jax.block_until_ready(fn(*args))
    path = glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True)[0]
    events = json.load(gzip.open(path))["traceEvents"]
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            total[e["name"]] += e.get("dur", 0)
            count[e["name"]] += 1
    ops = {k: (total[k] / calls, count[k] / calls) for k in total}
    return ops, statistics.median(walls) * 1e6


def report(times: dict, hlo: dict, steps: int, wall_us: float) -> dict:
    """Group the traced ops of the compiled program into matmuls / other ops,
    inside / outside the loop; print and return the summary. XLA may run
    independent ops at the same time (one per core), so the sum of their
    times can exceed the wall-clock time of the call."""
    rows = [(name, us, n, hlo[name]) for name, (us, n) in times.items() if name in hlo]
    groups = collections.defaultdict(lambda: [0.0, 0, 0.0])
    for _, us, n, info in rows:
        key = ("loop" if info["in_loop"] else "outside", "matmul" if info["flops"] else "other")
        groups[key][0] += us
        groups[key][1] += n
        groups[key][2] += info["flops"] * n
    total = sum(g[0] for g in groups.values())
    summary: dict[str, Any] = {"wall_ms": round(wall_us / 1e3, 2)}
    print(f"per call: {wall_us / 1e3:.1f} ms wall clock (untraced); the operations' times sum "
          f"to {total / 1e3:.1f} ms over {sum(g[1] for g in groups.values()):.0f} operations")
    print("| where | kind | ms per call | share | operations per step | µs each | GFLOP/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (where, kind), (us, n, flops) in sorted(groups.items()):
        per_step = n / steps if where == "loop" else n
        rate = f"{flops / us / 1e3:.1f}" if flops else "–"
        print(f"| {where} | {kind} | {us / 1e3:.1f} | {us / total:.0%} | "
              f"{per_step:.1f}{'' if where == 'loop' else ' (once)'} | "
              f"{us / max(n, 1):.1f} | {rate} |")
        summary[f"{where}_{kind}"] = {"ms": round(us / 1e3, 2), "ops": n, "gflops": flops / 1e9}
    print("\nthe ten costliest operations:")
    print("| op | where | ms per call | calls | shape | GFLOP/s |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for name, us, n, info in sorted(rows, key=lambda r: -r[1])[:10]:
        rate = f"{info['flops'] * n / us / 1e3:.1f}" if info["flops"] else "–"
        print(f"| {name} | {'loop' if info['in_loop'] else 'outside'} | {us / 1e3:.1f} | {n:.0f} | "
              f"{info['type'].split('{')[0]} | {rate} |")
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--shape", default="32,128,128,256", help="B,T,D,H")
    parser.add_argument("--cell", default="lstm", choices=["lstm", "gru", "mut1"])
    parser.add_argument("--pass", dest="pass_", default="fwd+bwd", choices=["fwd", "fwd+bwd"])
    parser.add_argument("--impl", default="recurrax", help="a JAX implementation of peers.py")
    parser.add_argument("--hoist", default="auto", choices=["auto", "true", "false"],
                        help="recurrax scan(hoist=...)")
    args = parser.parse_args(argv)
    if FLAG not in os.environ.get("XLA_FLAGS", ""):  # XLA reads its flags once: re-exec
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + FLAG).strip())
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.profile_ops",
                                   *(argv if argv is not None else sys.argv[1:])], env)
    import jax
    import jax.numpy as jnp

    from benchmarks import peers

    shape = peers.Shape(*map(int, args.shape.split(",")))
    scan_kw = {"hoist": peers.HOIST[args.hoist]} if peers.is_recurrax(args.impl) else {}
    fn, fargs = peers.jax_function(args.impl, args.cell, shape, jnp.float32,
                                   backward=args.pass_ == "fwd+bwd", **scan_kw)
    jitted = jax.jit(fn)
    hlo = parse_hlo(compiled_hlo(jitted, fargs))
    print(f"{args.impl} {args.cell} {args.pass_} at (B, T, D, H) = {tuple(shape)}, "
          f"hoist={args.hoist}")
    times, wall_us = profile(jitted, fargs)
    return report(times, hlo, shape.T, wall_us)


if __name__ == "__main__":
    main()
