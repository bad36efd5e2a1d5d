"""experiments/nnx_sentiment end to end on a tiny fake corpus (no network),
and its argument checks before any data loads."""

import json

import pytest

from experiments import nnx_sentiment
from tests.test_sentiment import fake_corpus, write_archive


def test_the_example_runs_end_to_end_on_a_tiny_corpus(tmp_path, capsys):
    write_archive(tmp_path, fake_corpus())
    out = tmp_path / "out"
    nnx_sentiment.main(["--cache-dir", str(tmp_path), "--out", str(out), "--max-len", "12",
                        "--hidden", "8", "--batch", "8", "--train-steps", "4",
                        "--eval-every", "2", "--min-count", "1"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["split_sizes"] == [24, 6, 6] and result["steps_run"] == 4
    assert [h["step"] for h in result["history"]] == [2, 4]
    assert result["best_step"] in (2, 4) and 0 <= result["test_accuracy"] <= 1
    assert json.loads((out / "result.json").read_text()) == result


@pytest.mark.parametrize("argument", [["--dropout", "1.0"], ["--hidden", "0"]])
def test_bad_arguments_stop_before_the_data_loads(tmp_path, argument, capsys):
    with pytest.raises(SystemExit) as stop:  # tmp_path has no data: nothing was loaded
        nnx_sentiment.main(["--cache-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                            *argument])
    assert stop.value.code == 2 and argument[0] in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
