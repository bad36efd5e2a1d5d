"""The char-RNN experiment end to end on a tiny model: it writes its files,
and a run stopped and resumed gives what an uninterrupted run gives."""

import json
import shutil

import pytest

from experiments import char_rnn

TINY = ["--hidden", "16", "--embed", "8", "--batch", "4", "--unroll", "16", "--eval-every", "2",
        "--sample-length", "20"]


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
@pytest.mark.data
def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path, capsys):
    straight = char_rnn.main([*TINY, "--train-steps", "4", "--out", str(tmp_path / "a")])
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "ngram.json", tmp_path / "b")  # the baseline is deterministic
    char_rnn.main([*TINY, "--train-steps", "2", "--out", str(tmp_path / "b")])
    resumed = char_rnn.main([*TINY, "--train-steps", "4", "--out", str(tmp_path / "b")])
    assert "resuming from step 2" in capsys.readouterr().out
    for key in ["steps", "train_chars_seen", "valid_bpc", "test_bpc", "sample"]:
        assert resumed[key] == straight[key], key
    history = [json.loads(line) for line in open(tmp_path / "b" / "history.jsonl")]
    assert [h["step"] for h in history] == [2, 4]
    assert (tmp_path / "b" / "loss.png").stat().st_size > 0
    assert straight["ngram_test_bpc"] > 1.0 and straight["sample"].startswith("ROMEO.\n")
    assert 20 <= len(straight["sample"]) - len("ROMEO.\n") <= 20 * 2  # 20 characters drawn


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
@pytest.mark.data
def test_a_run_with_other_settings_is_refused(tmp_path):
    char_rnn.main([*TINY, "--train-steps", "2", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="holds a run with other settings"):
        char_rnn.main([*TINY, "--train-steps", "2", "--hidden", "12", "--out", str(tmp_path)])
