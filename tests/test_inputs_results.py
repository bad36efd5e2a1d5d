"""Bad and edge inputs to `recurrax.train.results.ResultsFile`: every line is
strict JSON, non-finite metrics stay readable as missing, and a path that
cannot hold the file is a clear error (issue 16)."""

import builtins
import errno
import json
import math
import os

import numpy as np
import pytest

from experiments.jozefowicz import findings
from recurrax.train.results import ResultsFile


def strict(line: str) -> dict:
    def refuse(token):
        raise AssertionError(f"non-standard token {token} in {line}")
    return json.loads(line, parse_constant=refuse)


def test_non_finite_metrics_are_written_as_null_and_listed(tmp_path):
    path = tmp_path / "r.jsonl"
    f = ResultsFile(path)
    f.append({"key": "t0", "diverged": True,
              "metrics": {"valid_loss": float("nan"), "test_loss": float("inf"), "lr": 0.1},
              "curve": [1.0, -math.inf, np.float32("nan")]})
    line = path.read_text().splitlines()[0]
    record = strict(line)
    assert record["metrics"] == {"valid_loss": None, "test_loss": None, "lr": 0.1}
    assert record["curve"] == [1.0, None, None]
    assert record["nonfinite"] == {"metrics.valid_loss": "NaN", "metrics.test_loss": "Infinity",
                                   "curve.1": "-Infinity", "curve.2": "NaN"}
    assert f.read() == ([record], [])


def test_a_finite_record_is_written_unchanged(tmp_path):
    path = tmp_path / "r.jsonl"
    record = {"b": 1, "a": [0.5, 2], "c": {"x": None, "y": "s", "z": True}}
    ResultsFile(path).append(record)
    assert path.read_text() == json.dumps(record, sort_keys=True) + "\n"


def test_numpy_scalars_are_written_as_numbers(tmp_path):
    f = ResultsFile(tmp_path / "r.jsonl")
    record: dict = {"x": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True), 4: "int key"}
    f.append(record)
    assert f.read()[0] == [{"x": 0.5, "n": 3, "ok": True, "4": "int key"}]


def test_what_json_cannot_hold_is_refused_naming_the_field(tmp_path):
    path = tmp_path / "r.jsonl"
    f = ResultsFile(path)
    with pytest.raises(TypeError, match="a record must be a dict, got list"):
        f.append([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"record field 'metrics.w' is a ndarray, which JSON "
                                        r"cannot hold; convert it with float\(...\) or "
                                        r"\.tolist\(\)"):
        f.append({"metrics": {"w": np.zeros(2)}})
    with pytest.raises(TypeError, match="record field 'a' has the key"):
        f.append({"a": {(1, 2): 3}})
    with pytest.raises(TypeError, match="record field 's' is a set"):
        f.append({"s": {1, 2}})
    with pytest.raises(ValueError, match="the record's key 'nonfinite' is reserved"):
        f.append({"x": math.nan, "nonfinite": "yes"})
    assert not path.exists()  # nothing written


def test_a_diverged_trial_still_reads_as_diverged(tmp_path):
    """What the Jozefowicz reader makes of a trial whose metric is non-finite."""
    f = ResultsFile(tmp_path / "r.jsonl")
    f.append({"key": "words/gru/0", "task": "words", "arch": "gru", "trial": 0,
              "diverged": True,
              "metrics": {"valid_perplexity": math.nan, "test_perplexity": math.inf}})
    f.append({"key": "words/gru/1", "task": "words", "arch": "gru", "trial": 1,
              "diverged": False, "metrics": {"valid_perplexity": 120.0, "test_perplexity": 130.0}})
    records, problems = f.read()
    assert problems == [] and records[0]["diverged"] is True
    cell = findings.cells(records)[("words", "gru")]
    assert cell.diverged == 1
    np.testing.assert_array_equal(cell.valid, [np.nan, 120.0])
    np.testing.assert_array_equal(cell.test, [np.nan, 130.0])
    assert findings.score(cell) == 130.0


def test_old_lines_with_nan_tokens_are_read_as_null_and_reported(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": 1, "metrics": {"valid": NaN, "test": -Infinity}}\n'
                    '{"key": 2, "metrics": {"valid": 0.5}}\n')
    records, problems = ResultsFile(path).read()
    assert records == [{"key": 1, "metrics": {"valid": None, "test": None},
                        "nonfinite": {"metrics.valid": "NaN", "metrics.test": "-Infinity"}},
                       {"key": 2, "metrics": {"valid": 0.5}}]
    assert len(problems) == 1 and (
        f"{path}:1: non-standard JSON tokens (written by an older recurrax) at "
        f"['metrics.test', 'metrics.valid']; read as null, listed under 'nonfinite'"
        in problems[0])


def test_a_path_that_is_a_directory_is_refused(tmp_path):
    f = ResultsFile(tmp_path)
    with pytest.raises(ValueError, match=f"results file {tmp_path} is a directory; give a file "
                                         f"path such as"):
        f.append({"a": 1})
    with pytest.raises(ValueError, match="is a directory"):
        f.check_writable()
    with pytest.raises(ValueError, match="is a directory, not a results file"):
        f.read()


def test_a_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    f = ResultsFile(tmp_path / "file" / "sub" / "r.jsonl")
    with pytest.raises(ValueError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        f.append({"a": 1})
    assert (tmp_path / "file").read_text() == "x"


def test_a_missing_parent_is_created(tmp_path):
    f = ResultsFile(tmp_path / "a" / "b" / "r.jsonl")
    f.check_writable()
    assert not (tmp_path / "a").exists()  # the check creates nothing
    f.append({"a": 1})
    assert f.read() == ([{"a": 1}], [])


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="the folder .* is not writable"):
            ResultsFile(folder / "r.jsonl").append({"a": 1})
    finally:
        folder.chmod(0o700)


def test_a_failed_open_names_the_path(tmp_path, monkeypatch):
    """Permission denied (as a non-root user sees it) and a full disk."""
    path = tmp_path / "r.jsonl"
    real_open = builtins.open

    def failing(code):
        def fake(file, *args, **kwargs):
            if os.fspath(file) == os.fspath(path):
                raise OSError(code, os.strerror(code), os.fspath(file))
            return real_open(file, *args, **kwargs)
        return fake

    monkeypatch.setattr(builtins, "open", failing(errno.EACCES))
    with pytest.raises(ValueError, match=f"results file {path} cannot be written: Permission "
                                         f"denied"):
        ResultsFile(path).append({"a": 1})
    monkeypatch.setattr(builtins, "open", failing(errno.ENOSPC))
    with pytest.raises(OSError, match=f"results file {path}: the record could not be written: "
                                      f"No space left on device"):
        ResultsFile(path).append({"a": 1})


def test_bad_paths_are_refused_at_construction():
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        ResultsFile(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path is empty"):
        ResultsFile("")


def test_done_and_read_skip_torn_and_non_object_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('[1, 2]\n{"k": 1}\n"text"\n{"k": 2}')
    records, problems = ResultsFile(path).read()
    assert records == [{"k": 1}, {"k": 2}]
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:1", f"{path}:3", f"{path}:4"]
    assert "not a JSON object" in problems[0] and "kept" in problems[2]
    assert ResultsFile(path).done(lambda r: r["k"]) == {1, 2}


def test_extend_writes_a_batch_whole_or_not_at_all(tmp_path):
    path = tmp_path / "r.jsonl"
    log = ResultsFile(path)
    log.extend([{"a": 1}, {"a": 2.5}])
    with pytest.raises(TypeError, match="must be a dict, got list"):
        bad: list = [{"a": 3}, ["not", "a", "record"]]
        log.extend(bad)  # the good one is not written either
    log.extend([])
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": 1}, {"a": 2.5}]
    assert log.read() == ([{"a": 1}, {"a": 2.5}], [])
