"""Compile time and compiled memory of recurrax's forward+backward pass
against the sequence length, from `jax.jit(f).lower(*args).compile()`; nothing
is run.

- Compile time: the wall time of `lower` plus `compile` of the forward+backward
  function of `peers.jax_function` (loss `sum(ys)`, gradients for params and
  xs) for `recurrax.scan(..., unroll=u)`, u in 1, 4, 16 and T (full unroll).
  Every (T, unroll) is a new program, so nothing comes from a cache.
- Memory: `Compiled.memory_analysis()` of the same function with
  `remat=False` and `remat=True` (unroll 1): `temp + argument + output` bytes
  (`total_bytes`), every other field the analysis has (present in jax 0.10.2
  and 0.11: `temp_size_in_bytes`, `argument_size_in_bytes`,
  `output_size_in_bytes`, `alias_size_in_bytes`,
  `generated_code_size_in_bytes`, `peak_memory_in_bytes`) as `<name>_bytes`.
  A backend that gives no analysis yields a record with `total_bytes: null`.

Each function yields one record (a dict) per measurement.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import jax

from benchmarks.peers import DTYPES, Shape, jax_function

MEMORY_FIELDS = ("temp", "argument", "output", "alias", "generated_code", "peak_memory")


def unroll_value(label: str, T: int) -> int:
    """`"T"` is full unroll (the sequence length), else the number itself."""
    return T if label == "T" else int(label)


def lower_and_compile(cell: str, shape: Shape, dtype: str, **scan_kw):
    """(lowered, compiled, lower seconds, compile seconds) of recurrax's
    forward+backward pass."""
    fn, args = jax_function("recurrax", cell, shape, DTYPES[dtype], backward=True, **scan_kw)
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    return lowered, compiled, lowered_at - start, time.perf_counter() - lowered_at


def compile_times(cell: str, B: int, D: int, H: int, lengths, unrolls, dtype="float32",
                  max_full_unroll: int | None = None) -> Iterator[dict]:
    """One record per (T, unroll): `lower_s`, `compile_s` and their sum
    `seconds`, unroll by unroll (the slowest, full unroll, last). An unroll
    larger than T is left out (it equals full unroll); full unroll beyond
    `max_full_unroll` steps yields a skip record."""
    for label in unrolls:
        for T in lengths:
            unroll = unroll_value(label, T)
            base = {"cell": cell, "pass": "forward+backward", "dtype": dtype,
                    "B": B, "T": T, "D": D, "H": H, "unroll": unroll, "unroll_label": label}
            if unroll > T or (label != "T" and unroll == T and "T" in unrolls):
                continue
            if label == "T" and max_full_unroll is not None and T > max_full_unroll:
                yield {"kind": "skip", "part": "compile", **base,
                       "reason": f"full unroll beyond {max_full_unroll} steps left out "
                                 f"(--max-full-unroll)"}
                continue
            _, _, lower_s, compile_s = lower_and_compile(cell, Shape(B, T, D, H), dtype,
                                                         unroll=unroll)
            yield {"kind": "compile", **base, "lower_s": round(lower_s, 4),
                   "compile_s": round(compile_s, 4), "seconds": round(lower_s + compile_s, 4)}


def memory_stats(compiled) -> dict:
    """The byte counts of `compiled.memory_analysis()` that exist here, and
    `total_bytes = temp + argument + output` (None without an analysis)."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        analysis = None
    sizes: dict[str, int] = {}
    for field in MEMORY_FIELDS:
        value = getattr(analysis, f"{field}_size_in_bytes",
                        getattr(analysis, f"{field}_in_bytes", None))
        if value is not None:
            sizes[f"{field}_bytes"] = int(value)
    parts = [sizes.get(f"{f}_bytes") for f in ("temp", "argument", "output")]
    total = sum(p for p in parts if p is not None) if None not in parts else None
    return {**sizes, "total_bytes": total}


def peak_memory(cell: str, B: int, D: int, H: int, lengths, dtype="float32") -> Iterator[dict]:
    """One record per (T, remat) with the compiled forward+backward pass's memory."""
    for T in lengths:
        for remat in (False, True):
            _, compiled, _, _ = lower_and_compile(cell, Shape(B, T, D, H), dtype, remat=remat)
            yield {"kind": "memory", "cell": cell, "pass": "forward+backward", "dtype": dtype,
                   "B": B, "T": T, "D": D, "H": H, "remat": remat, **memory_stats(compiled)}
