"""Polyphonic music: Bach chorales as piano rolls at quarter-note steps.

Stands in for the Nottingham and MuseData piano rolls of Boulanger-Lewandowski
et al. (2012) that Jozefowicz et al. (2015) used: the chorales of the `music21`
corpus (`music21.corpus.chorales.Iterator()`, Riemenschneider numbering; 371
entries naming 350 distinct files), parsed from MusicXML.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from typing import Any, cast

import numpy as np

from recurrax.tasks.base import Rolls, Task, check_int
from recurrax.tasks.cache import cache_root, load_npz, save_npz

CACHE_VERSION = 1
MIN_CHORALES = 10
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(midi: int) -> str:
    """Sharp spelling with the octave, MIDI 60 = "C4"."""
    return f"{PITCH_CLASSES[midi % 12]}{midi // 12 - 1}"


def catalogue_key(name: str) -> tuple[tuple[int, ...], str]:
    """Sort key of a corpus path by its BWV number: "bach/bwv248.12-2" -> ((248, 12, 2), ...)."""
    return tuple(int(k) for k in re.findall(r"\d+", name.rsplit("/", 1)[-1])), name


def _events(score: Any) -> tuple[int, list[tuple[int, int]]]:
    """(steps, [(step, midi)]) of a parsed score: step k is the quarter beat at
    time frac + k (frac: the offset of the second bar modulo one quarter, 0
    unless the pickup is a fraction of a beat), and a pitch is on at step k
    when a note or chord of any part has onset <= frac + k < onset + duration."""
    from music21 import stream

    bars = score.parts[0].getElementsByClass(stream.Measure) if score.parts else []
    frac = float(bars[1].offset) % 1.0 if len(bars) > 1 else 0.0
    eps = 1e-6
    events = []
    for element in score.flatten().notes:
        onset = float(element.offset) - frac
        first, stop = math.ceil(onset - eps), math.ceil(onset + float(element.quarterLength) - eps)
        events += [(k, p.midi) for p in getattr(element, "pitches", ()) for k in range(first, stop)]
    return math.ceil(float(score.highestTime) - frac - eps), events


def _parse(max_chorales: int | None) -> dict[str, np.ndarray]:
    """Parse the chorales, sorted by BWV number (the first `max_chorales` of them)."""
    try:
        from music21 import corpus
    except ImportError as err:
        raise ImportError("music() needs music21: pip install recurrax[music]") from err
    filenames = cast(Iterable[str], corpus.chorales.Iterator(returnType="filename"))
    names = sorted(set(filenames), key=catalogue_key)
    if max_chorales is not None and max_chorales > len(names):
        raise ValueError(f"max_chorales: expected at most {len(names)} (the chorales in the "
                         f"music21 corpus) or None, got {max_chorales}")
    names = names[:max_chorales]
    parsed = [_events(corpus.parse(name)) for name in names]
    pitches = [m for _, events in parsed for _, m in events]
    low, high = min(pitches), max(pitches)
    lengths = np.array([steps for steps, _ in parsed], np.int32)
    frames = np.zeros((int(lengths.sum()), high - low + 1), np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for start, (steps, events) in zip(starts, parsed, strict=True):
        for k, m in events:
            if 0 <= k < steps:
                frames[start + k, m - low] = 1
    return {"ids": np.array(names), "lengths": lengths, "low": np.array(low), "frames": frames}


def _rolls(pieces: list[np.ndarray]) -> Rolls:
    lengths = np.array([len(p) for p in pieces], np.int32)
    frames = np.zeros((len(pieces), int(lengths.max()), pieces[0].shape[1]), np.float32)
    for n, piece in enumerate(pieces):
        frames[n, : len(piece)] = piece
    return Rolls(frames, lengths)


def music(
    cache_dir: str | os.PathLike[str] | None = None,
    max_chorales: int | None = None,
    seed: int | None = None,
) -> Task:
    """Bach chorales as multi-hot piano rolls, one frame per quarter note.

    Definition: each chorale of `music21.corpus.chorales.Iterator()` (350
    distinct files) is parsed and all its parts are merged; frame k holds the
    pitches sounding at its k-th quarter beat (see `_events`; a held note stays
    on, repeats are not expanded, no distinction between re-struck and held
    notes; a frame where every part rests is empty). A few chorales carry
    instrumental parts besides the four voices, so a frame can hold up to 10
    pitches. P = high - low + 1 for the lowest and highest MIDI pitch among
    the chorales parsed (for all 350: MIDI 36..86, C2..D6, P = 51); vocab =
    the pitch names, sharp spelling, "C4" = MIDI 60.

    Split (fixed; `seed` is accepted for a uniform signature and unused): the
    chorales sorted by BWV number, the i-th (from 0) in valid when i % 10 == 8,
    in test when i % 10 == 9, else in train (80 / 10 / 10 %).
    `max_chorales` (>= 10, so that every split is non-empty) keeps the first
    ones in that order, with the same rule; the pitch range is then theirs.

    The parsed corpus is cached as a compressed .npz (keyed by max_chorales)
    in the cache directory; later calls read it without music21. Metric:
    "nll_per_step", the negative log-likelihood of each frame summed over
    pitches, averaged over steps.
    """
    if max_chorales is not None:
        max_chorales = check_int("max_chorales", max_chorales, MIN_CHORALES)
    if seed is not None:
        check_int("seed", seed, 0)
    key = "all" if max_chorales is None else str(max_chorales)
    path = cache_root(cache_dir) / f"bach-chorales-v{CACHE_VERSION}-{key}.npz"
    if path.exists():
        data = load_npz(path)
    else:
        data = _parse(max_chorales)
        save_npz(path, **data)
    low, pieces = int(data["low"]), np.split(data["frames"], np.cumsum(data["lengths"])[:-1])
    groups: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for i, piece in enumerate(pieces):
        groups["valid" if i % 10 == 8 else "test" if i % 10 == 9 else "train"].append(piece)
    return Task(
        name="music",
        vocab=tuple(pitch_name(low + p) for p in range(data["frames"].shape[1])),
        train=_rolls(groups["train"]),
        valid=_rolls(groups["valid"]),
        test=_rolls(groups["test"]),
        metric="nll_per_step",
        generated=False,
    )
