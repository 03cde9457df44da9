"""The typed records of a search: a candidate as proposed, the outcome the searcher is told, and the
one record of a candidate that the store writes and every reader (loop, report, tracking, resume,
benchmarks) reads. As Optuna's ``FrozenTrial``/``TrialState`` and KerasTuner's ``Trial``/``TrialStatus``:
one dataclass and one status enum, never dicts assembled in several places.

Records carry ``SCHEMA``: a store written by another schema is refused with a clear message instead of
being half read. A record is stored as two halves (``CandidateRecord.halves``): what the data, params and
seed decide, and what the clock adds (seconds, times, tracking run ids), so two identical runs write the
same first half byte for byte and DVC sees the same search.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from automl.arch.graph import Graph
from automl.errors import SearchError

SCHEMA = 2  # 1: the untyped records of automl before the typed schema (no "schema" key)
CLOCK_FIELDS = ("train_seconds", "finished_at", "timing", "tracking_run_id")  # differ between identical runs


class Status(str, Enum):
    """Where a candidate is: a record that says COMPLETE always has its weights on disk."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self is not Status.RUNNING


@dataclass(frozen=True)
class Reasoning:
    """Why the searcher proposed a candidate: the numbers logged with it (``searcher.*`` in MLflow)."""

    estimated_memory_mb: float = 0.0
    ucb: float | None = None
    gp_mean: float | None = None
    gp_std: float | None = None

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Origin:
    """Where a warm-started root came from: an earlier search (``source``: its folder or MLflow run id)
    and its candidate there. ``root`` numbers it among this search's roots (its weights are the
    store's ``root_weights(root)``); ``head_reset``: the classes changed, so its body was kept and its
    classification head re-initialised, and it trains instead of being scored as it is."""

    source: str
    candidate: int
    root: int
    head_reset: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Origin | None":
        return None if d is None else cls(str(d["source"]), int(d["candidate"]), int(d["root"]),
                                          bool(d.get("head_reset", False)))


@dataclass(frozen=True)
class Candidate:
    """One architecture to train: where it came from, why it was chosen, and how long to train it
    (``until_deadline``: to a deadline instead of to patience, at ``budget_share`` of the search's
    remaining time: 1 = its end). A warm-started root has an ``origin`` and no parent."""

    id: int
    graph: Graph
    parent_id: int | None = None
    operation: str | None = None  # the morphism(s) that made it from its parent; None for the seed
    reasoning: Reasoning = field(default_factory=Reasoning)
    until_deadline: bool = False
    budget_share: float = 1.0
    origin: Origin | None = None

    @property
    def score_only(self) -> bool:
        """A root whose trained weights fit this data as they are: scored on the validation split, not trained."""
        return self.origin is not None and not self.origin.head_reset

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "graph": self.graph.to_dict(), "parent_id": self.parent_id,
                "operation": self.operation, "reasoning": dataclasses.asdict(self.reasoning),
                "until_deadline": self.until_deadline, "budget_share": self.budget_share,
                "origin": dataclasses.asdict(self.origin) if self.origin else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Candidate":
        return cls(int(d["id"]), Graph.from_dict(d["graph"]), d.get("parent_id"), d.get("operation"),
                   Reasoning(**d.get("reasoning", {})), bool(d.get("until_deadline", False)),
                   float(d.get("budget_share", 1.0)), Origin.from_dict(d.get("origin")))


@dataclass(frozen=True)
class Outcome:
    """What the searcher is told of a trained candidate: ``val_accuracy`` is its ranking score (the
    best epoch's accuracy, or a tail mean under ``train.score_epochs``). ``out_of_memory`` is set where
    the error is caught, so the searcher never reads error messages."""

    status: Status
    val_accuracy: float | None = None
    out_of_memory: bool = False


@dataclass(frozen=True)
class CandidateRecord:
    """Everything known of one candidate; ``record.json`` and ``clock.json`` in its store folder are this,
    as JSON (see ``halves``)."""

    id: int
    parent_id: int | None
    operation: str | None
    architecture: str
    n_params: int
    reasoning: Reasoning
    status: Status
    val_accuracy: float | None = None
    val_loss: float | None = None  # at the best epoch: breaks ties of accuracy on small validation sets
    score: float | None = None  # what ranks it (``train.score_epochs``); None: val_accuracy
    inherited_val_accuracy: float | None = None  # before training, with the weights it started from
    best_epoch: int = 0
    epochs: int = 0
    stopped: str = ""  # patience | max_epochs | deadline | error
    train_seconds: float = 0.0
    history: tuple[dict[str, Any], ...] = ()
    error: str = ""
    out_of_memory: bool = False
    finished_at: float | None = None
    timing: dict[str, float] = field(default_factory=dict)  # wall, epochs, inherit, callbacks, store
    tracking_run_id: str | None = None  # the MLflow run that logged it, when one did
    origin: Origin | None = None  # a warm-started root: the earlier search's candidate it is

    @classmethod
    def of(cls, candidate: Candidate, status: Status, **fields: Any) -> "CandidateRecord":
        """A record of ``candidate`` with ``status`` and the training's ``fields``."""
        return cls(candidate.id, candidate.parent_id, candidate.operation, candidate.graph.describe(),
                   candidate.graph.param_count(), candidate.reasoning, status, **fields, origin=candidate.origin)

    @property
    def succeeded(self) -> bool:
        return self.status is Status.COMPLETE and self.val_accuracy is not None

    @property
    def ranking_score(self) -> float | None:
        """The validation score that ranks it and that the searcher is told: ``score`` where training
        set one, else the best epoch's accuracy."""
        return self.score if self.score is not None else self.val_accuracy

    def outcome(self) -> Outcome:
        return Outcome(self.status, self.ranking_score if self.succeeded else None, self.out_of_memory)

    def rank(self) -> tuple[float, float, int]:
        """Best first: the ranking score, then lower validation loss (a validation set of a few
        hundred images ties often on accuracy), then the earlier candidate."""
        loss = self.val_loss if self.val_loss is not None else float("inf")
        score = self.ranking_score
        return (score if score is not None else -1.0), -loss, -self.id

    def first_error_line(self) -> str:
        return self.error.splitlines()[0] if self.error else ""

    def replace(self, **changes: Any) -> "CandidateRecord":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update(schema=SCHEMA, status=self.status.value, reasoning=dataclasses.asdict(self.reasoning),
                 history=list(self.history), origin=dataclasses.asdict(self.origin) if self.origin else None)
        return d

    def halves(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the record without the clock, the clock): ``CLOCK_FIELDS`` and each epoch's seconds move to
        the second half; ``joined`` puts them back."""
        record = self.to_dict()
        clock = {name: record.pop(name) for name in CLOCK_FIELDS}
        clock["epoch_seconds"] = [h.get("seconds") for h in self.history]
        record["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in self.history]
        return record, clock

    @classmethod
    def joined(cls, record: dict[str, Any], clock: dict[str, Any] | None, where: str = "record") -> "CandidateRecord":
        """A record from its two halves; without the clock (a store DVC checked out keeps none) its
        fields keep their defaults."""
        clock = dict(clock or {})
        seconds = clock.pop("epoch_seconds", None)
        history = record.get("history", [])
        if seconds and len(seconds) == len(history):
            history = [dict(h, seconds=s) for h, s in zip(history, seconds)]
        return cls.from_dict({**record, **clock, "history": history}, where)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "record") -> "CandidateRecord":
        if d.get("schema") != SCHEMA:
            raise SearchError(f"{where}: written by another version of automl (record schema "
                              f"{d.get('schema', 1)}, this one reads {SCHEMA}). Start a new search there.")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values.update(status=Status(d["status"]), reasoning=Reasoning(**d["reasoning"]),
                      history=tuple(d.get("history", ())), origin=Origin.from_dict(d.get("origin")))
        return cls(**values)


def ranked(records: list[CandidateRecord]) -> list[CandidateRecord]:
    """The candidates that trained, best first (see ``CandidateRecord.rank``)."""
    return sorted((r for r in records if r.succeeded), key=CandidateRecord.rank, reverse=True)


def best_of(records: list[CandidateRecord]) -> CandidateRecord | None:
    """The one definition of the best candidate."""
    done = ranked(records)
    return done[0] if done else None
