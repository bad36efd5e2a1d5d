"""The lines of a search log (`recurrax.search.loop`), each one JSON object in
a `recurrax.train.results.ResultsFile`, told apart by its `"kind"`:

* `Evaluation` (`"eval"`): one evaluation the search created, a cell (its
  graph as `graph.to_json` writes it, and its `graph.canonical` key) with
  its own hyperparameters, how it came about (`origin`: a seed, a baseline, a
  child of `parent` made by `mutations`, or a re-evaluation of a listed cell)
  and the round that created it; the search's `tag` (which search the log
  belongs to, e.g. `{"preset", "fingerprint"}`) sits at the top level of
  the line beside those fields.
* `Score` (`"score"`): the validation score of one evaluation on one stage,
  or None (null) where its training diverged.

`record.to_json()` is the line's object (what `ResultsFile.append` takes);
`Evaluation.from_json(obj)` and `Score.from_json(obj)` read one back and
refuse an object of another kind, or one that lacks a field, with a
`ValueError`; `from_json(obj)` reads either kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, get_args

Origin = Literal["seed", "baseline", "child", "reevaluate"]
ORIGINS: tuple[Origin, ...] = get_args(Origin)


def _check(obj: dict[str, Any], kind: str, names: list[str], reader: str) -> None:
    """Refuse `obj` unless it is a record of `kind` holding every field of `names`."""
    if obj.get("kind") != kind:
        raise ValueError(f"{reader}: a record of kind {obj.get('kind')!r} "
                         f"(id {obj.get('id')!r}), expected {kind!r}")
    missing = [n for n in names if n not in obj]
    if missing:
        raise ValueError(f"{reader}: record {obj.get('id')!r} lacks the field(s) {missing}")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation created by the search (a log line of kind "eval")."""

    KIND: ClassVar[str] = "eval"

    id: str                      # "e0", "e1", ... in the order of creation
    round: int                   # 0: the seeds and baselines
    origin: Origin
    graph_key: str               # graph.canonical of the cell
    graph: str                   # graph.to_json of the cell
    name: str | None             # the seed's or baseline's name ("gru"); None for a child
    parent: str | None           # a child's parent's graph_key; None otherwise
    mutations: tuple[str, ...]   # what made the cell from its parent, one line per mutation
    hyper: dict[str, Any]        # the evaluation's hyperparameters (Proposer.draw_hyper)
    tag: dict[str, Any] = field(default_factory=dict)  # which search the log belongs to

    def __post_init__(self):
        if self.origin not in ORIGINS:
            raise ValueError(f"Evaluation {self.id!r}: origin {self.origin!r} is not one of "
                             f"{ORIGINS}")
        clash = sorted(set(self.tag) & {"kind", *_EVALUATION_FIELDS})
        if clash:
            raise ValueError(f"Evaluation {self.id!r}: the tag's keys {clash} are the "
                             f"record's own fields")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, "id": self.id, "round": self.round, "origin": self.origin,
                "graph_key": self.graph_key, "graph": self.graph, "name": self.name,
                "parent": self.parent, "mutations": list(self.mutations), "hyper": self.hyper,
                **self.tag}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Evaluation:
        """The record of `obj`; the keys that are no field of it are its `tag`."""
        _check(obj, cls.KIND, _EVALUATION_FIELDS, "Evaluation.from_json")
        return cls(id=obj["id"], round=obj["round"], origin=obj["origin"],
                   graph_key=obj["graph_key"], graph=obj["graph"], name=obj["name"],
                   parent=obj["parent"], mutations=tuple(obj["mutations"]), hyper=obj["hyper"],
                   tag={k: v for k, v in obj.items()
                        if k != "kind" and k not in _EVALUATION_FIELDS})


#: The keys of an evaluation's line besides "kind" and its tag's.
_EVALUATION_FIELDS = [f.name for f in fields(Evaluation) if f.name != "tag"]


@dataclass(frozen=True)
class Score:
    """The score of evaluation `id` on `stage` (a log line of kind "score");
    None where its training diverged."""

    KIND: ClassVar[str] = "score"

    id: str
    stage: str
    score: float | None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, "id": self.id, "stage": self.stage, "score": self.score}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Score:
        _check(obj, cls.KIND, ["id", "stage", "score"], "Score.from_json")
        return cls(id=obj["id"], stage=obj["stage"], score=obj["score"])


def from_json(obj: dict[str, Any]) -> Evaluation | Score:
    """The record of one log line, of either kind; `ValueError` for another kind."""
    kinds: dict[str, type[Evaluation] | type[Score]] = {Evaluation.KIND: Evaluation,
                                                        Score.KIND: Score}
    kind = obj.get("kind")
    if kind not in kinds:
        raise ValueError(f"a record of kind {kind!r} (id {obj.get('id')!r}); a search log "
                         f"holds only records of kind {sorted(kinds)}")
    return kinds[kind].from_json(obj)
