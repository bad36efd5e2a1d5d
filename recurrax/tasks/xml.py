"""XML modelling: next-character prediction on generated nested tags.

Jozefowicz et al. (2015), Section 3.1: documents of nested random tags,
generated step by step: with probability 1/2, or once the document has run 50
steps, close the most recent open tag (stop when none is open); otherwise open
a new tag with a random name.
"""

from __future__ import annotations

import string

import numpy as np

from recurrax.tasks.base import (
    Stream,
    Task,
    check_int,
    check_seed,
    check_sizes,
    draw_disjoint,
    encode_chars,
    generated_task,
    stream_from_docs,
)

LETTERS = string.ascii_lowercase
MIN_NAME, MAX_NAME = 2, 10
DOC_END = "\n"
VOCAB: tuple[str, ...] = tuple(sorted(DOC_END + "</>" + LETTERS))


def _document(rng: np.random.Generator, max_steps: int, p_close: float,
              name_lengths: tuple[int, int]) -> str:
    """One document, following the generator of the module docstring; step 0
    always opens a tag (the document's first element)."""
    close = rng.random(max_steps) < p_close
    sizes = rng.integers(name_lengths[0], name_lengths[1] + 1, size=max_steps)
    letters = rng.integers(0, len(LETTERS), size=(max_steps, name_lengths[1]))
    out: list[str] = []
    stack: list[str] = []
    step = 0
    while True:
        if step > 0 and (step >= max_steps or close[step]):
            if not stack:
                return "".join(out)
            out.append(f"</{stack.pop()}>")
        else:
            stack.append("".join(LETTERS[k] for k in letters[step, : sizes[step]]))
            out.append(f"<{stack[-1]}>")
        step += 1


def xml(
    seed: int = 0,
    n_train: int = 10000,
    n_valid: int = 1000,
    n_test: int = 1000,
    max_steps: int = 50,
    p_close: float = 0.5,
    name_lengths: tuple[int, int] = (MIN_NAME, MAX_NAME),
) -> Task:
    """A character stream of generated XML documents; n_* count documents.

    Definition: a document is built step by step. Step 0 opens a tag (the
    literal rule would leave half of all documents empty). At each later step,
    with probability `p_close` or once `max_steps` steps have run, close the
    most recent open tag, or stop if none is open; otherwise open a new tag
    whose name has a length uniform in `name_lengths` (the paper: 2..10) and
    letters uniform over "a".."z".
    Opening tags therefore only occur in the first `max_steps` steps, and a
    document may hold several top-level elements. It is written without spaces
    and followed by one newline: "<abc><de></de></abc>\\n". The split's stream
    is its documents concatenated, `doc_starts` True at each document's "<".
    vocab: the sorted characters "\\n", "/", "<", ">", "a".."z". Metric:
    next-character accuracy. No test document occurs in valid or train, no
    valid document in train.
    """
    seed = check_seed(seed)
    sizes = check_sizes(n_train, n_valid, n_test)
    max_steps = check_int("max_steps", max_steps, 1)
    if (not isinstance(name_lengths, (tuple, list)) or len(name_lengths) != 2
            or any(isinstance(n, bool) or not isinstance(n, int) for n in name_lengths)
            or not 1 <= name_lengths[0] <= name_lengths[1]):
        raise ValueError(f"name_lengths: expected (shortest, longest) with 1 <= shortest <= "
                         f"longest, got {name_lengths!r}")
    name_lengths = (int(name_lengths[0]), int(name_lengths[1]))
    if isinstance(p_close, bool) or not isinstance(p_close, (int, float)) or not 0 < p_close < 1:
        raise ValueError(f"p_close: expected a probability in (0, 1), got {p_close!r}")

    def draw(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
        docs = [_document(rng, max_steps, float(p_close), name_lengths) for _ in range(n)]
        return [(doc, doc) for doc in docs]

    hint = "lower n_test/n_valid or raise max_steps"
    splits = draw_disjoint(seed, sizes, draw, hint)

    def stream(docs: list[str]) -> Stream:
        return stream_from_docs([encode_chars(doc + DOC_END, VOCAB) for doc in docs])

    return generated_task("xml", VOCAB, splits, stream)
