"""`experiments.parallel_in_time` end to end on its smoke preset: the two runs
train alike, the sequential run's first loss is the plain model's loss on
batch 0, a run killed after its first evaluation resumes to the same curves,
and bad arguments are refused before anything trains."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from experiments import parallel_in_time as exp
from recurrax import nn


def first_loss(config):
    """The loss of step 1, from the definitions: the GRU's state after each
    row's last valid step through the read-out (b = 0.5), on batch 0."""
    k_cell, k_out = jax.random.split(jax.random.key(config["seed"]))
    cell = recurrax.cells.gru(config["hidden"])
    gru = cell.init(k_cell, 2)
    gru["b_z"] = gru["b_z"] + config["keep_bias"]
    out = nn.dense(1, bias_init=jax.nn.initializers.constant(0.5)).init(k_out, config["hidden"])
    batch = exp.batches(config, 0)
    xs, ys, lengths = batch["xs"][0], batch["ys"][0], batch["lengths"][0]
    h = np.zeros((xs.shape[1], config["hidden"]))
    for t in range(xs.shape[0]):  # one step at a time, rows past their length kept
        new, _ = cell.step(gru, jnp.asarray(h, jnp.float32), cell.prepare(gru, xs[t]))
        h = np.where((t < lengths)[:, None], np.asarray(new), h)
    pred = h @ np.asarray(out["W"])[:, 0] + np.asarray(out["b"])[0]
    return float(np.mean((pred - ys) ** 2))


@pytest.mark.slow
def test_smoke_run_trains_both_alike(tmp_path):
    config = dict(exp.PRESETS["smoke"], seed=0)
    out = tmp_path / "run"
    summary = exp.main(["--preset", "smoke", "--out", str(out)])["summary"]
    curves = json.loads((out / "result.json").read_text())["curves"]
    for key in ("sequential", "parallel", "iterations", "converged"):
        assert len(curves[key]) == config["steps"]
    np.testing.assert_allclose(curves["sequential"][0], first_loss(config), rtol=1e-5)
    # The parallel solve stops at a scaled residual of about 1.2e-5, so the two
    # runs' losses agree to a few parts in 1e5, not bit for bit.
    np.testing.assert_allclose(curves["parallel"], curves["sequential"], rtol=1e-3)
    assert curves["parallel"] != curves["sequential"]  # two evaluations, not one reused
    assert summary["max_abs_loss_diff"] == pytest.approx(
        np.max(np.abs(np.subtract(curves["sequential"], curves["parallel"]))))
    T_max = 20 + 20 // 10  # the smoke preset's longest row
    assert config["length"] == 20
    assert all(1 <= i <= T_max for i in curves["iterations"]) and all(curves["converged"])
    assert all(lam < 0 for lam in summary["lyapunov"]["sequential"])  # a GRU at init forgets
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [(r["run"], r["step"]) for r in records] == [
        (run, step) for step in (2, 4) for run in exp.RUNS]
    assert records[-1]["iterations"] == curves["iterations"][-2:]
    assert (out / "loss.png").stat().st_size > 0
    again = exp.main(["--preset", "smoke", "--out", str(out)])  # finished: nothing trains
    assert again["summary"] == summary
    assert len((out / "history.jsonl").read_text().splitlines()) == len(records)


@pytest.mark.slow  # three runs: about 30 s
def test_a_run_killed_after_its_first_evaluation_resumes_to_the_same_curves(tmp_path,
                                                                           monkeypatch):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    save = exp.checkpoint.save

    def save_then_die(*args, **kwargs):  # the process dies right after its first checkpoint
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(exp.checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        exp.main(["--preset", "smoke", "--out", str(killed)])
    monkeypatch.setattr(exp.checkpoint, "save", save)
    assert len((killed / "history.jsonl").read_text().splitlines()) == 2  # one per run
    resumed = exp.main(["--preset", "smoke", "--out", str(killed)])
    complete = exp.main(["--preset", "smoke", "--out", str(whole)])
    saved = [json.loads((d / "result.json").read_text()) for d in (killed, whole)]
    for key in ("sequential", "parallel", "iterations", "converged"):
        np.testing.assert_array_equal(saved[0]["curves"][key], saved[1]["curves"][key])
    drop = lambda s: {k: v for k, v in s.items() if k != "seconds"}
    assert drop(resumed["summary"]) == drop(complete["summary"])
    lines = [(killed / "history.jsonl").read_text(), (whole / "history.jsonl").read_text()]
    assert [[(r["run"], r["step"], r["losses"]) for r in map(json.loads, t.splitlines())]
            for t in lines][0] == [
        [(r["run"], r["step"], r["losses"]) for r in map(json.loads, t.splitlines())]
        for t in lines][1]


@pytest.mark.parametrize("argv, message", [
    (["--length", "5"], "--length"),
    (["--steps", "5", "--chunk", "2"], "not a multiple of --chunk"),
    (["--method", "newton"], "--method"),
    (["--hidden", "0"], "--hidden"),
])
def test_arguments_are_checked_first(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        exp.main(["--preset", "smoke", "--out", str(tmp_path / "o"), *argv])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_output_path_is_checked_first(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        exp.main(["--preset", "smoke", "--out", str(tmp_path / "file")])
    assert "exists and is not a directory" in capsys.readouterr().err
