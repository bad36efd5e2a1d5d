"""`benchmarks.parallel` end to end at tiny sizes (minGRU: its exact linear
path and quasi-DEER on the same cell without it), its skips (memory cap,
budget), its weights settings and its Markdown table."""

import json

import jax
import numpy as np
import pytest

import recurrax
from benchmarks import parallel as bench


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # 7 s; the benchmark's parts are tested above
def test_tiny_run_records_and_table(tmp_path):
    out = tmp_path / "p.jsonl"
    text = bench.main(["--tiny", "--cells", "mingru", "--methods", "quasi-deer", "--batch", "1",
                       "--out", str(out), "--run-id", "t1"])
    records = read(out)
    assert records[0]["kind"] == "meta" and all(r["run_id"] == "t1" for r in records)
    runs = [r for r in records if r["kind"] == "parallel"]
    assert {(r["impl"], r["pass"]) for r in runs} == {
        (i, p) for i in ("sequential", "quasi-deer", "linear") for p in bench.PASSES}
    for r in runs:
        assert (r["cell"], r["T"], r["H"], r["B"], r["D"]) == ("mingru", 16, 4, 1, 2)
        assert r["seconds"] > 0 and r["compile_s"] > 0 and len(r["samples"]) == 1
        assert r["lyapunov"] < 0  # minGRU at its init forgets
        seq = next(s for s in runs if s["impl"] == "sequential" and s["pass"] == r["pass"])
        assert r["speedup"] == pytest.approx(seq["seconds"] / r["seconds"], rel=1e-3)
    forward = {r["impl"]: r for r in runs if r["pass"] == "forward"}
    assert "iterations" not in forward["sequential"]
    assert forward["linear"]["method_used"] == "linear" and forward["linear"]["iterations"] == 0
    qd = forward["quasi-deer"]  # the Newton path on minGRU with `linear` removed
    assert qd["method_used"] == "quasi-deer" and qd["converged"] and qd["parallel"]
    assert 1 <= qd["iterations"] <= 16
    lines = text.splitlines()
    assert lines[0].startswith("| cell | weights | T | H | B | pass | λ̂ | sequential | quasi-deer")
    assert len(lines) == 2 + 2 and "| mingru | init | 16 | 4 | 1 | fwd |" in lines[2]
    assert f"{qd['iterations']} it" in lines[2] and "×" in lines[2]
    assert out.with_suffix(".md").read_text().strip() == text
    assert bench.main(["--report", str(out)]) == text  # the table again, from the file


@pytest.mark.slow
def test_memory_cap_and_budget_skip_with_reasons(tmp_path):
    out = tmp_path / "p.jsonl"
    cap = 2**14  # bytes: lstm, T=16, B=1, H=32 (N = 2H = 64): deer holds 16·64² floats
    bench.main(["--tiny", "--cells", "lstm", "--methods", "deer,quasi-deer", "--batch", "1",
                "--hidden", "32", "--passes", "forward", "--memory-cap-gib", str(cap / 2**30),
                "--out", str(out)])
    records = read(out)
    skips = {r["impl"]: r for r in records if r["kind"] == "skip"}
    assert skips["deer"]["reason"] == ("estimated 256 KiB (T·B·N² floats) over the 16 KiB cap")
    assert "sequential" not in skips  # the reference always runs
    runs = {r["impl"]: r for r in records if r["kind"] == "parallel"}
    assert set(runs) | set(skips) == {"sequential", "deer", "quasi-deer"}
    if "quasi-deer" in skips:  # 16·64 floats fit; its compiled temporaries decide
        assert skips["quasi-deer"]["temp_bytes"] > cap
        assert skips["quasi-deer"]["reason"].startswith("compiled temporary memory")
    else:
        assert runs["quasi-deer"]["temp_bytes"] <= cap
    assert bench.estimated_bytes("lstm", "deer", 16, 4, 1) == 4 * 16 * 8 * 8
    assert bench.estimated_work("lstm", "deer", 16, 4, 2) == 16 * 2 * 8 ** 3
    assert bench.estimated_work("gru", "quasi-elk", 16, 4, 2) == 16 * 2 * 4 ** 2
    assert bench.estimated_work("mingru", "linear", 16, 4, 2) == 0
    out3 = tmp_path / "w.jsonl"  # gru T=16, B=1, H=4: quasi-elk 256 entries, deer 1024
    bench.main(["--tiny", "--cells", "gru", "--methods", "deer,quasi-elk", "--batch", "1",
                "--passes", "forward", "--max-work", "300", "--out", str(out3)])
    skips = {r["impl"]: r["reason"] for r in read(out3) if r["kind"] == "skip"}
    assert skips == {"deer": "1e+03 (T·B·N³) per iteration over --max-work 3e+02"}
    ran = {r["impl"]: r for r in read(out3) if r["kind"] == "parallel"}
    assert ran["quasi-elk"]["method_used"] == "quasi-elk"  # the method asked for ran
    assert bench.estimated_bytes("gru", "quasi-elk", 10, 4, 3) == 4 * 10 * 3 * 4
    out2 = tmp_path / "q.jsonl"
    bench.main(["--tiny", "--cells", "gru", "--budget", "0", "--out", str(out2)])
    records = read(out2)
    assert [r["kind"] for r in records] == ["meta", "skip"]
    assert records[1]["reason"].startswith("time budget of 0 s reached")


def test_weights_settings():
    cell = recurrax.cells.lstm(4)
    p = cell.init(jax.random.key(0), 3)
    c = bench.weights("lstm", p, "contracting")
    for k in p:
        np.testing.assert_array_equal(c[k], 0.5 * p[k] if k.startswith("W_h") else p[k])
    long = bench.weights("lstm", p, "long-memory")
    np.testing.assert_array_equal(long["b_f"], p["b_f"] + 3)
    g = recurrax.cells.mingru(4).init(jax.random.key(0), 3)
    np.testing.assert_array_equal(bench.weights("mingru", g, "long-memory")["b_z"], g["b_z"] - 3)
    assert bench.weights("gru", {"b_z": np.zeros(2)}, "init")["b_z"].tolist() == [0, 0]


def test_table_formats_speedups_fallbacks_and_skips():
    base = {"cell": "gru", "weights": "init", "T": 1000, "H": 8, "B": 1, "pass": "forward",
            "lyapunov": -0.4}
    records = [
        {"kind": "parallel", "impl": "sequential", **base, "seconds": 0.01, "speedup": 1.0},
        {"kind": "parallel", "impl": "quasi-deer", **base, "seconds": 0.005, "speedup": 2.0,
         "iterations": 7, "parallel": True},
        {"kind": "parallel", "impl": "elk", **base, "seconds": 2.0, "speedup": 0.005,
         "iterations": 100, "parallel": False},
        {"kind": "skip", "impl": "deer", **base, "reason": "estimated 9 GiB (T·B·N² floats) "
                                                           "over the 4 GiB cap"},
    ]
    lines = bench.table(records).splitlines()
    assert lines[0] == "| cell | weights | T | H | B | pass | λ̂ | sequential | quasi-deer | deer " \
                       "| elk |"
    assert lines[2] == ("| gru | init | 1000 | 8 | 1 | fwd | -0.40 | 10 ms | 5 ms ×2, 7 it "
                        "| – (memory) "
                        "| 2 s ×0.005, 100 it, fallback |")


def test_bad_options_are_refused(capsys):
    for argv in (["--cells", "rnn"], ["--methods", "newton"], ["--steps", "0"],
                 ["--rounds", "0"], ["--weights", "trained"], ["--max-work", "nan"]):
        with pytest.raises(SystemExit) as err:
            bench.parse(argv)
        assert err.value.code == 2
    assert "--cells: unknown ['rnn']" in capsys.readouterr().err
