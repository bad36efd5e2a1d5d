"""The adding problem's generator, checked against the definition with plain
NumPy, and the experiment's command line end to end on tiny settings."""

import json

import numpy as np
import pytest

from recurrax.tasks.addition import AdditionBatch, addition, correct


def ones_and_ends(batch: AdditionBatch):
    """Per row: the steps whose marker is 1, and those whose marker is −1."""
    markers = batch.inputs[..., 1]
    ones = [np.flatnonzero(markers[:, b] == 1) for b in range(markers.shape[1])]
    ends = [np.flatnonzero(markers[:, b] == -1) for b in range(markers.shape[1])]
    return ones, ends


def test_shapes_dtypes_and_lengths():
    b = addition(0, 64, 50)
    T = 55  # T0 + ⌊T0/10⌋
    assert b.inputs.shape == (T, 64, 2) and b.inputs.dtype == np.float32
    assert b.targets.shape == (64,) and b.targets.dtype == np.float32
    assert b.lengths.dtype == np.int32 and b.marked.shape == (2, 64)
    assert b.lengths.min() >= 50 and b.lengths.max() <= T
    assert set(addition(1, 2000, 50).lengths) == set(range(50, 56))  # every length occurs


def test_markers_positions_and_padding():
    b = addition(3, 500, 40)
    ones, ends = ones_and_ends(b)
    values = b.inputs[..., 0]
    for row, (one, end) in enumerate(zip(ones, ends, strict=True)):
        length = b.lengths[row]
        assert len(one) == 2, "exactly two marked steps"
        assert list(end) == [0, length - 1], "−1 at the first and the last valid step"
        assert sorted(b.marked[:, row]) == list(one)
        n1, n2 = b.marked[:, row]
        assert 1 <= n1 <= 9 and 1 <= n2 <= length // 2 - 2 and n1 != n2
        assert np.all(b.inputs[length:, row] == 0), "padding is (0, 0)"
        assert np.all(np.abs(values[:length, row]) <= 1)
        other = np.setdiff1d(np.arange(length), np.array([0, length - 1, *one]))
        assert np.all(b.inputs[other, row, 1] == 0)


def test_marker_positions_cover_their_ranges():
    b = addition(4, 5000, 30, 30)  # ⌊30/2⌋ − 2 = 13
    n1, n2 = b.marked
    assert set(n1) == set(range(1, 10))
    assert set(n2) == set(range(1, 14))
    counts = np.bincount(n1, minlength=10)[1:]
    assert counts.min() > 0.8 * 5000 / 9  # roughly uniform
    assert np.any(n2 < n1) and np.any(n2 > n1)  # N2 may come first


def test_targets_are_the_sum_of_the_marked_values():
    b = addition(5, 300, 60)
    ones, _ = ones_and_ends(b)
    sums = np.array([b.inputs[one, row, 0].sum() for row, one in enumerate(ones)])
    np.testing.assert_allclose(b.targets, 0.5 + sums / 4, rtol=0, atol=1e-6)
    raw = addition(5, 300, 60, normalized=False)
    np.testing.assert_allclose(raw.targets, sums, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(raw.inputs, b.inputs)  # same draws, other scale


def test_deterministic_by_seed():
    a, b, c = addition(7, 16, 20), addition(7, 16, 20), addition(8, 16, 20)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.inputs, c.inputs)
    d = addition(np.random.default_rng(7), 16, 20)  # a Generator seeded alike
    np.testing.assert_array_equal(a.inputs, d.inputs)
    rng = np.random.default_rng(0)
    assert not np.array_equal(addition(rng, 4, 20).inputs, addition(rng, 4, 20).inputs)


def test_fixed_length_and_explicit_max_length():
    b = addition(0, 32, 25, 25)
    assert b.inputs.shape[0] == 25 and np.all(b.lengths == 25)
    b = addition(0, 32, 25, 40)
    assert b.inputs.shape[0] == 40 and b.lengths.min() >= 25 and b.lengths.max() <= 40


def test_padding_follows_the_scan_lengths_convention():
    import jax.numpy as jnp

    import recurrax
    b = addition(2, 6, 20, 30)
    valid = np.asarray(recurrax.sequence_mask(jnp.asarray(b.lengths), b.inputs.shape[0]))
    assert np.all(b.inputs[~valid] == 0)
    assert np.all(b.inputs[b.lengths - 1, np.arange(6), 1] == -1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rng=0, batch=0, min_length=20), "batch: expected an integer >= 1, got 0"),
    (dict(rng=0, batch=4, min_length=10), "min_length: expected an integer >= 11, got 10"),
    (dict(rng=0, batch=4, min_length=20, max_length=19), r"max_length: expected an integer >= 20"),
    (dict(rng=-1, batch=4, min_length=20), r"rng \(seed\): expected an integer >= 0"),
    (dict(rng="0", batch=4, min_length=20), "rng: expected a numpy.random.Generator or an int"),
    (dict(rng=0, batch=4.0, min_length=20), "batch: expected an integer"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        addition(**kwargs)


def test_correct_is_the_papers_threshold():
    y = np.array([0.5, 0.5, 0.5])
    np.testing.assert_array_equal(correct(y + [0.0, 0.039, 0.041], y), [True, True, False])
    raw = correct(y + [0.15, 0.17, 0], y, normalized=False)  # the threshold is 4 · 0.04
    np.testing.assert_array_equal(raw, [True, False, True])


def run_cli(argv, capsys):
    from experiments import addition as experiment
    experiment.main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_experiment_cli_writes_the_table_the_plot_and_a_json_line(tmp_path, capsys):
    out = tmp_path / "run"
    lines, summary = run_cli(["--preset", "smoke", "--lengths", "12", "--models", "attention",
                              "--steps", "2", "--out", str(out)], capsys)
    [row] = summary["table"]
    assert (row["T0"], row["model"], row["steps"]) == (12, "attention", 2)
    assert 0 <= row["correct"] <= 1 and row["test_mse"] > 0 and row["params"] > 0
    assert summary["solved"] == {"attention@12": row["solved"]}
    assert any(line.startswith("| 12 | attention |") for line in lines)
    assert (out / "addition.png").stat().st_size > 0
    saved = json.loads((out / "result.json").read_text())
    assert len(saved["curves"][0]["train_loss"]) == 2 and saved["table"] == summary["table"]


@pytest.mark.slow
def test_experiment_smoke_preset_runs_every_model(tmp_path, capsys):
    lines, summary = run_cli(["--preset", "smoke", "--out", str(tmp_path)], capsys)
    assert [(r["T0"], r["model"]) for r in summary["table"]] == [
        (T0, model) for T0 in (12, 20) for model in ("attention", "lstm", "lstm+attention")]
    assert all(np.isfinite(r["test_mse"]) for r in summary["table"])
    assert (tmp_path / "addition.png").stat().st_size > 0


def test_experiment_rejects_steps_that_are_not_whole_chunks(tmp_path):
    from experiments import addition as experiment
    with pytest.raises(SystemExit):
        experiment.parse_args(["--preset", "smoke", "--steps", "5", "--chunk", "2"])
