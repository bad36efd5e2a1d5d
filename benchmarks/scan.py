"""recurrax against its peers over a grid of shapes, in one process: speed,
compile time and compiled memory.

    python -m benchmarks.scan [--quick | --tiny] [--out results/bench/scan.jsonl]
                              [--dtypes float32,bfloat16] [--cells lstm,gru,mut1] ...

Measured (the implementations are in benchmarks/peers.py):

- Throughput: for each cell, shape, dtype and pass (forward; forward+backward
  with gradients for params and inputs), every implementation is built and
  called once (compile + first run), then all are timed round-robin
  (`timing.interleaved_medians`: warm-up, then interleaved rounds). Each
  record has the median tokens/s (B·T per second), the achieved matmul
  GFLOP/s (`timing.rnn_flops`: forward `2·B·T·(D+H)·G·H` with G = 4 for LSTM,
  3 for GRU, 2 for MUT1; forward+backward 3×), the fraction of the limit
  (limit time / this time) and `ratio_to` (other's time / this time, > 1:
  this one is faster) for every other implementation of the same run.
- Compile time against T of recurrax's forward+backward with unroll 1, 4, 16
  and T, and compiled memory against T with and without remat
  (benchmarks/compile_memory.py).

Shapes: the default grid is batch {1, 16, 64, 256} × hidden {128, 256, 512,
1024} × steps {64, 256, 1024} with input size D = H/2 (the reference shapes
below follow the same rule); MUT1 adds x to an H-wide sum, so it runs with
D = H. `--grid star` takes the centre (64, 256, 512) and varies one axis at a
time instead of the full product. `--quick` runs the three reference shapes
(B, T, D, H) = (32, 128, 128, 256), (64, 256, 256, 512), (1, 512, 128, 256)
for lstm, gru and mut1 and all their peers (mut1 with D = H), short compile lengths,
and float32 (under 10 minutes on 2 CPU cores). `--tiny` is a seconds-long
smoke run for the tests.

Output: one JSON line per measurement (and per skipped implementation, with
its reason), appended and flushed as it goes to `--out`; at the end the
Markdown report (printed and written to `<out stem>.md`) and the plots
`<stem>_throughput.png`, `<stem>_compile.png`, `<stem>_memory.png`
(benchmarks/report.py). `--budget S` stops starting new measurements after S
seconds, so a run under a hard time limit still writes its report.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import itertools
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from benchmarks import compile_memory, peers, report
from benchmarks.peers import FAMILIES, PASSES, Shape
from benchmarks.timing import block, interleaved_medians, median, rnn_flops
from recurrax.train.results import ResultsFile

REFERENCE_SHAPES = (Shape(32, 128, 128, 256), Shape(64, 256, 256, 512), Shape(1, 512, 128, 256))

PRESETS = {
    "full": dict(batch=[1, 16, 64, 256], hidden=[128, 256, 512, 1024], steps=[64, 256, 1024],
                 rounds=7, warmup=1, compile_lengths=[64, 256, 1024], unrolls=["1", "4", "16", "T"],
                 max_full_unroll=256, memory_lengths=[64, 256, 1024, 4096],
                 compile_shape=[16, 128, 256], memory_shape=[64, 256, 512]),
    "quick": dict(rounds=5, warmup=1, compile_lengths=[16, 32, 64],
                  unrolls=["1", "4", "16", "T"], max_full_unroll=64,
                  memory_lengths=[64, 256, 1024], compile_shape=[16, 128, 256],
                  memory_shape=[64, 256, 512]),
    "tiny": dict(rounds=1, warmup=0, compile_lengths=[4], unrolls=["1", "T"],
                 max_full_unroll=8, memory_lengths=[4, 8], compile_shape=[2, 8, 16],
                 memory_shape=[2, 8, 16]),
}


def input_size(cell: str, H: int) -> int:
    """D = H/2, or D = H for cells that add x to an H-wide sum (MUT1)."""
    return H if FAMILIES[cell].needs_d_equals_h else max(1, H // 2)


def plan(args) -> list[tuple[str, Shape]]:
    """(cell, shape) pairs to time, in order."""
    if args.preset == "quick":
        pairs = [(c, s) for c in args.cells for s in REFERENCE_SHAPES]
    elif args.preset == "tiny":
        pairs = [(c, Shape(2, 8, 8, 16)) for c in args.cells]
    else:
        if args.grid == "star":  # batch sweep first: it is the one plotted
            B0, T0, H0 = args.centre
            triples = [(b, T0, H0) for b in args.batch]
            triples += [(B0, T0, h) for h in args.hidden]
            triples += [(B0, t, H0) for t in args.steps]
            triples = list(dict.fromkeys(triples))
        else:
            triples = list(itertools.product(args.batch, args.steps, args.hidden))
        pairs = [(cell, Shape(B, T, 0, H)) for cell in args.cells for B, T, H in triples]
    return [(c, s._replace(D=s.H) if FAMILIES[c].needs_d_equals_h else
             s if s.D else s._replace(D=input_size(c, s.H))) for c, s in pairs]


def implementations(cell: str, args) -> list[str]:
    """The implementations of `cell` selected by --impls, with recurrax once
    per --hoist setting."""
    out = []
    for impl in FAMILIES[cell].impls:
        if args.impls and impl not in args.impls:
            continue
        if peers.is_recurrax(impl) and not peers.is_kernel(impl):
            out += [peers.recurrax_id(impl, h) for h in args.hoist]
        else:
            out.append(impl)
    return out


class Recorder:
    """Appends one JSON line per record to `path` (a `ResultsFile`: locked,
    fsynced, a torn last line isolated), prints a note for each new skip
    reason, keeps the time budget."""

    def __init__(self, path: Path, run_id: str, budget: float | None):
        self.file, self.run_id, self.budget = ResultsFile(path), run_id, budget
        self.start = time.perf_counter()
        self.common = {"run_id": run_id, "backend": jax.default_backend(),
                       "device": jax.devices()[0].device_kind}
        self.noted = set()

    def write(self, record: dict) -> None:
        record = {**record, **self.common}
        self.file.append(record)
        if record["kind"] == "skip":
            note = (record.get("impl") or record.get("part"), record["reason"])
            if note not in self.noted:
                self.noted.add(note)
                print(f"  skipped {note[0]}: {note[1]}", flush=True)

    def over_budget(self, part: str) -> bool:
        if self.budget is None or time.perf_counter() - self.start < self.budget:
            return False
        reason = f"time budget of {self.budget:.0f} s reached; the rest is left out"
        if (part, reason) not in self.noted:
            self.write({"kind": "skip", "part": part, "reason": reason})
        return True


def measure(rec: Recorder, cell: str, shape: Shape, dtype: str, pass_: str, impls, args) -> None:
    """Build, compile and time every implementation of one cell, shape, dtype
    and pass; write one throughput record each (or a skip record)."""
    backward = pass_ == "forward+backward"
    base = {"cell": cell, "pass": pass_, "dtype": dtype, **shape._asdict()}
    thunks, first_call, memory = {}, {}, {}
    for impl in impls:
        reason = peers.unavailable(impl, dtype)
        if reason is None:
            try:
                start = time.perf_counter()
                thunk = peers.build(impl, cell, shape, dtype, backward)
                block(thunk())
                first_call[impl] = time.perf_counter() - start
                thunks[impl] = thunk
                memory[impl] = compiled_bytes(thunk)
            except Exception as err:  # a peer that fails is skipped, not fatal
                reason = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
        if reason is not None:
            rec.write({"kind": "skip", "impl": impl, **base, "reason": reason})
    if not thunks:
        return
    try:
        times = interleaved_medians(thunks, rounds=args.rounds, warmup=args.warmup,
                                    min_time=args.min_sample_ms / 1e3)
    except Exception as err:
        rec.write({"kind": "skip", "impl": ",".join(thunks), **base,
                   "reason": f"timing failed: {type(err).__name__}: {str(err)[:300]}"})
        return
    med = {impl: median(ts) for impl, ts in times.items()}
    flops = rnn_flops(*shape, FAMILIES[cell].gates, backward, FAMILIES[cell].input_gates)
    tokens = shape.B * shape.T
    for impl, t in med.items():
        rec.write({
            "kind": "throughput", "impl": impl, **base, "gates": FAMILIES[cell].gates,
            "tokens_per_s": round(tokens / t, 1), "seconds": t,
            "gflops": round(flops / t / 1e9, 3), "flops": flops,
            "fraction_of_limit": round(med["limit"] / t, 4) if "limit" in med else None,
            "ratio_to": {o: round(med[o] / t, 4) for o in med if o != impl},
            "first_call_s": round(first_call[impl], 3), "memory_bytes": memory.get(impl),
            "rounds": args.rounds, "samples": [round(x, 7) for x in times[impl]],
        })
    print(f"{cell} B={shape.B} T={shape.T} D={shape.D} H={shape.H} {dtype} {pass_}: "
          + ", ".join(f"{i} {report._k(tokens / t)}" for i, t in med.items()), flush=True)


def compiled_bytes(thunk: Callable[[], Any]) -> int | None:
    """Temporary + argument + output bytes of a JAX thunk's compiled program
    (`peers.build`'s `partial(jit(fn), *args)`; the compilation is cached),
    None for PyTorch or where the backend does not say."""
    if not isinstance(thunk, functools.partial):
        return None
    try:
        stats = thunk.func.lower(*thunk.args).compile().memory_analysis()
        return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes
                   + stats.output_size_in_bytes)
    except Exception:  # noqa: BLE001 - memory is a side measurement, never fatal
        return None


def run_throughput(rec: Recorder, args) -> None:
    for cell, shape in plan(args):
        impls = implementations(cell, args)
        for dtype in args.dtypes:
            for pass_ in args.passes:
                if rec.over_budget("throughput"):
                    return
                measure(rec, cell, shape, dtype, pass_, impls, args)


def run_compile(rec: Recorder, args) -> None:
    B, D, H = args.compile_shape
    records = compile_memory.compile_times("lstm", B, D, H, args.compile_lengths, args.unrolls,
                                           max_full_unroll=args.max_full_unroll)
    while not rec.over_budget("compile"):  # the generator compiles one program per step
        r = next(records, None)
        if r is None:
            return
        rec.write(r)
        if r["kind"] == "compile":
            print(f"compile T={r['T']} unroll={r['unroll_label']}: {r['seconds']:.2f} s",
                  flush=True)


def run_memory(rec: Recorder, args) -> None:
    B, D, H = args.memory_shape
    records = compile_memory.peak_memory("lstm", B, D, H, args.memory_lengths)
    while not rec.over_budget("memory"):
        r = next(records, None)
        if r is None:
            return
        rec.write(r)
        mib = "n/a" if r["total_bytes"] is None else f"{r['total_bytes'] / 2**20:.1f} MiB"
        print(f"memory T={r['T']} remat={r['remat']}: {mib}", flush=True)


PARTS = {"throughput": run_throughput, "compile": run_compile, "memory": run_memory}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "equinox", "optax", "numpy", "torch"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def meta(args, argv) -> dict:
    info = {"kind": "meta", "argv": list(argv), "preset": args.preset,
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()], "versions": versions(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "jax_default_matmul_precision":
                str(getattr(jax.config, "jax_default_matmul_precision", None))}
    if info["versions"]["torch"] and peers.unavailable("torch", "float32") is None:
        torch = peers.import_torch()
        info["torch_threads"] = torch.get_num_threads()
        info["torch_tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                              "cudnn": torch.backends.cudnn.allow_tf32}
    return info


def _list(kind: Callable[[str], Any] = str) -> Callable[[str], list]:
    """An argparse type: "a,b,c" -> [kind("a"), kind("b"), kind("c")]."""
    return lambda s: [kind(x) for x in s.split(",") if x]


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", dest="preset", action="store_const", const="quick", default="full")
    p.add_argument("--tiny", dest="preset", action="store_const", const="tiny")
    p.add_argument("--out", type=Path, default=Path("results/bench/scan.jsonl"))
    p.add_argument("--parts", type=_list(), default=["throughput", "compile", "memory"])
    p.add_argument("--cells", type=_list(), default=["lstm", "gru", "mut1"],
                   help=f"of {', '.join(FAMILIES)}")
    p.add_argument("--impls", type=_list(), default=None, help="only these (default: all)")
    p.add_argument("--passes", type=_list(), default=list(PASSES))
    p.add_argument("--dtypes", type=_list(), default=["float32"])
    p.add_argument("--hoist", type=_list(), default=["auto"],
                   help="recurrax scan(hoist=...) settings to time: auto,true,false")
    p.add_argument("--grid", choices=["cross", "star"], default="cross",
                   help="cross: every batch × steps × hidden; star: vary one axis at a "
                        "time around --centre")
    p.add_argument("--centre", type=_list(int), default=[64, 256, 512], help="B,T,H")
    p.add_argument("--batch", type=_list(int))
    p.add_argument("--hidden", type=_list(int))
    p.add_argument("--steps", type=_list(int))
    p.add_argument("--rounds", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--min-sample-ms", type=float, default=20.0,
                   help="repeat calls shorter than this within one sample")
    p.add_argument("--compile-lengths", type=_list(int))
    p.add_argument("--unrolls", type=_list())
    p.add_argument("--max-full-unroll", type=int)
    p.add_argument("--compile-shape", type=_list(int), help="B,D,H")
    p.add_argument("--memory-lengths", type=_list(int))
    p.add_argument("--memory-shape", type=_list(int), help="B,D,H")
    p.add_argument("--budget", type=float, default=None, help="seconds; then stop starting")
    p.add_argument("--run-id", default=None)
    p.add_argument("--no-report", action="store_true")
    args = p.parse_args(argv)
    for key, value in {**PRESETS["full"], **PRESETS[args.preset]}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for name, allowed in (("cells", FAMILIES), ("passes", PASSES), ("dtypes", peers.DTYPES),
                          ("hoist", peers.HOIST),
                          ("parts", PARTS)):
        bad = set(getattr(args, name)) - set(allowed)
        if bad:
            p.error(f"--{name}: unknown {sorted(bad)}; known: {', '.join(allowed)}")
    return args


def main(argv=None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    run_id = args.run_id or f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    rec = Recorder(args.out, run_id, args.budget)
    rec.write(meta(args, argv))
    print(f"run {run_id} on {rec.common['device']}; writing {args.out}", flush=True)
    for part in args.parts:  # in the order given
        PARTS[part](rec, args)
    print(f"measured in {time.perf_counter() - rec.start:.0f} s", flush=True)
    if args.no_report:
        return ""
    text, paths = report.write(args.out, run_id)
    print(text)
    print("wrote " + ", ".join(map(str, paths)), flush=True)
    return text


if __name__ == "__main__":
    main()
