"""Search strategies behind one ask/tell interface, with their whole state as JSON.

Contract (as KerasTuner's Oracle and Optuna's ask/tell): ``ask(n)`` returns up to ``n`` new candidates
(fewer, or none, when the strategy has nothing more to propose); the driver trains them however it
likes (in-process, Prefect mapped tasks, a cluster) and reports each with ``tell(id, result)``.
A searcher never trains, logs or calls back into its driver, so it can be tested with a fake trainer
and its state (``to_state``/``from_state``) can be saved after every ``tell`` and restored after a crash.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from automl.graph import Graph, initial_graph


@dataclass
class Candidate:
    """One architecture to train: where it came from and why it was chosen."""

    id: int
    graph: Graph
    parent_id: int | None = None
    operation: str | None = None  # the morphism that made it from its parent; None for the seed
    info: dict[str, Any] = field(default_factory=dict)  # the searcher's reasoning (UCB, GP mean/std...)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "graph": self.graph.to_dict(), "parent_id": self.parent_id,
                "operation": self.operation, "info": dict(self.info)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Candidate":
        return cls(int(d["id"]), Graph.from_dict(d["graph"]), d.get("parent_id"), d.get("operation"),
                   dict(d.get("info", {})))


@dataclass
class Observation:
    """What the searcher knows of a told candidate."""

    candidate: Candidate
    status: str  # "complete" | "failed"
    val_accuracy: float | None


class Searcher(ABC):
    """Bookkeeping shared by every strategy; a strategy implements ``_propose``."""

    name = "base"

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, seed: int = 0) -> None:
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.seed = seed
        self.next_id = 1
        self.pending: dict[int, Candidate] = {}
        self.observations: list[Observation] = []

    def ask(self, n: int = 1) -> list[Candidate]:
        """Up to ``n`` new candidates; an empty list means the strategy is done."""
        proposals = self._propose(n)
        out = []
        for graph, parent_id, operation, info in proposals[:n]:
            candidate = Candidate(self.next_id, graph, parent_id, operation, info)
            self.next_id += 1
            self.pending[candidate.id] = candidate
            out.append(candidate)
        return out

    def tell(self, candidate_id: int, result: dict[str, Any]) -> None:
        """Report a trained (or failed) candidate: ``result`` has ``status`` and ``val_accuracy``."""
        candidate = self.pending.pop(candidate_id, None)
        if candidate is None:
            raise KeyError(f"candidate {candidate_id} was not asked for, or was told already")
        status = result.get("status", "failed")
        acc = result.get("val_accuracy") if status == "complete" else None
        self.observations.append(Observation(candidate, status, acc))

    def best(self) -> Observation | None:
        done = [o for o in self.observations if o.status == "complete" and o.val_accuracy is not None]
        return max(done, key=lambda o: o.val_accuracy) if done else None

    @abstractmethod
    def _propose(self, n: int) -> list[tuple[Graph, int | None, str | None, dict[str, Any]]]:
        """Return up to ``n`` (graph, parent id, operation, info) tuples."""

    # --- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "seed": self.seed,
            "next_id": self.next_id,
            "pending": [c.to_dict() for c in self.pending.values()],
            "observations": [{"candidate": o.candidate.to_dict(), "status": o.status,
                              "val_accuracy": o.val_accuracy} for o in self.observations],
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.next_id = int(state["next_id"])
        self.pending = {c.id: c for c in (Candidate.from_dict(d) for d in state["pending"])}
        self.observations = [Observation(Candidate.from_dict(o["candidate"]), o["status"], o["val_accuracy"])
                             for o in state["observations"]]


class InitialSearcher(Searcher):
    """Trains only the seed's initial network (the baseline every other strategy must beat)."""

    name = "initial"

    def _propose(self, n: int) -> list[tuple[Graph, int | None, str | None, dict[str, Any]]]:
        if self.observations or self.pending:
            return []
        return [(initial_graph(self.input_shape, self.n_classes), None, None, {})]


STRATEGY_CLASSES: dict[str, type[Searcher]] = {"initial": InitialSearcher}


def make_searcher(strategy: str, input_shape: tuple[int, ...], n_classes: int, seed: int = 0) -> Searcher:
    if strategy not in STRATEGY_CLASSES:
        raise ValueError(f"unknown search strategy {strategy!r}; choose from {sorted(STRATEGY_CLASSES)}")
    return STRATEGY_CLASSES[strategy](input_shape, n_classes, seed)


def searcher_from_state(state: dict[str, Any]) -> Searcher:
    searcher = make_searcher(state["strategy"], tuple(state["input_shape"]), int(state["n_classes"]),
                             int(state["seed"]))
    searcher._load_state(state)
    return searcher
