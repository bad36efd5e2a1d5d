"""The results file: appends survive kills and concurrent writers."""

import json
import multiprocessing as mp

from recurrax.train.results import ResultsFile, unique


def test_append_and_read(tmp_path):
    f = ResultsFile(tmp_path / "sub" / "r.jsonl")
    assert f.read() == ([], [])
    f.append({"trial": 1, "x": 0.5})
    f.append({"trial": 2, "x": [1, 2]})
    records, problems = f.read()
    assert records == [{"trial": 1, "x": 0.5}, {"trial": 2, "x": [1, 2]}] and problems == []
    assert f.done(lambda r: r["trial"]) == {1, 2}


def test_a_torn_last_line_is_reported_ignored_and_isolated(tmp_path):
    path = tmp_path / "r.jsonl"
    f = ResultsFile(path)
    f.append({"trial": 1})
    with open(path, "ab") as raw:  # a writer killed half-way through a line
        raw.write(b'{"trial": 2, "metr')
    records, problems = f.read()
    assert records == [{"trial": 1}]
    assert len(problems) == 1 and ":2: torn" in problems[0]
    f.append({"trial": 3})  # the next append starts on a fresh line
    records, problems = f.read()
    assert records == [{"trial": 1}, {"trial": 3}]
    assert len(problems) == 1 and ":2: not a complete JSON object, a torn" in problems[0]
    assert path.read_text().splitlines()[2] == json.dumps({"trial": 3})


def _writer(path, start, n):
    f = ResultsFile(path)
    for i in range(start, start + n):
        f.append({"trial": i, "pad": "x" * 3000})  # long lines: larger than one small write


def test_concurrent_writers_do_not_corrupt_the_file(tmp_path):
    path = tmp_path / "r.jsonl"
    procs = [mp.get_context("fork").Process(target=_writer, args=(path, 100 * k, 60))
             for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    records, problems = ResultsFile(path).read()
    assert problems == []
    assert sorted(r["trial"] for r in records) == sorted(
        100 * k + i for k in range(4) for i in range(60))


def test_unique_keeps_the_first_of_each_key():
    rows = [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}, {"k": 1, "v": "c"}]
    assert unique(rows, lambda r: r["k"]) == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]
