"""Search strategies behind one ask/tell interface, with their whole state as JSON.

Contract (as KerasTuner's Oracle and Optuna's ask/tell): ``ask(n)`` returns up to ``n`` new candidates
(fewer, or none when it cannot propose: nothing trained to morph yet, or nothing left); the driver
trains them however it likes (in-process, Prefect mapped tasks, a cluster) and reports each with
``tell(id, result)``. A searcher never trains, logs or calls back into its driver, so it can be tested
with a fake trainer, and its state (``to_state``; ``strategies.searcher_from_state``) can be saved after
every ``tell`` and restored after a crash.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from automl.arch.graph import Graph, initial_graph
from automl.arch.memory import estimate_memory_mb
from automl.arch.morph import ARCHITECTURE, OPERATIONS, MorphLimits, random_morph
from automl.config import SearchConfig
from automl.search.kernel import Descriptor, describe
from automl.search.records import SCHEMA, Candidate, Origin, Outcome, Reasoning, Status


@dataclass
class Observation:
    """What the searcher knows of a told candidate."""

    candidate: Candidate
    status: Status
    val_accuracy: float | None


Proposal = tuple[Graph, "int | None", "str | None", Reasoning]  # graph, parent id, operation, why


class Searcher(ABC):
    """Bookkeeping shared by every strategy; a strategy implements ``_propose``.

    Every strategy starts with the seed's initial network (and one of each ``search.extra_seed_widths``,
    trained from scratch after it), or with ``roots`` (a warm start: an earlier search's best networks,
    asked first, in order); later proposals are morphs of trained (complete)
    architectures, never a duplicate of one already asked, never over the memory limit.
    """

    name = "base"
    until_deadline = False  # train each candidate for the whole remaining budget, not to patience

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, seed: int = 0,
                 config: SearchConfig | None = None, batch_size: int = 128,
                 memory_limit_mb: float = math.inf, roots: Sequence[tuple[Graph, Origin]] = ()) -> None:
        """``memory_limit_mb``: no candidate estimated above it is proposed (the driver knows the
        machine; an out-of-memory failure lowers it)."""
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.seed = seed
        self.config = config or SearchConfig()
        self.batch_size = batch_size
        self.rng = random.Random(seed)
        default = OPERATIONS if self.config.tune_training else ARCHITECTURE
        self.limits = MorphLimits(self.config.max_depth, self.config.max_width,
                                  self.config.allowed_operations() or default)
        self.memory_limit_mb = memory_limit_mb
        self.next_id = 1
        self.pending: dict[int, Candidate] = {}
        self.observations: list[Observation] = []
        self.roots = list(roots)  # not asked yet
        self.seed_networks = [] if self.roots else self.seed_graphs()  # not asked yet

    def ask(self, n: int = 1) -> list[Candidate]:
        """Up to ``n`` new candidates: the roots first (the seed networks, or the warm start's),
        then the strategy's proposals."""
        if self.roots:
            return [self._add(Candidate(self.next_id, graph, origin=origin, reasoning=self._sized(graph, Reasoning())))
                    for graph, origin in self._take_roots(n)]
        if self.seed_networks:
            taken, self.seed_networks = self.seed_networks[:n], self.seed_networks[n:]
            proposals: list[Proposal] = [(graph, None, None, Reasoning()) for graph in taken]
        else:
            proposals = self._propose(n)
        out = []
        for graph, parent_id, operation, reasoning in proposals[:n]:
            candidate = Candidate(self.next_id, graph, parent_id, operation, self._sized(graph, reasoning),
                                  self.until_deadline)
            if candidate.id == 1 and self.config.root_share and not self.until_deadline:  # a converged root
                candidate = replace(candidate, until_deadline=True, budget_share=self.config.root_share)
            out.append(self._add(candidate))
        return out

    def seed_graph(self) -> Graph:
        """The seed's initial network, ``search.seed_width`` wide."""
        return initial_graph(self.input_shape, self.n_classes, width=self.config.seed_width)

    def seed_graphs(self) -> list[Graph]:
        """The seed network, then one of each extra width that fits in memory: the first round."""
        extra = [initial_graph(self.input_shape, self.n_classes, width=w) for w in self.config.seed_widths()[1:]]
        return [self.seed_graph()] + [g for g in extra if self.memory_mb(g) <= self.memory_limit_mb]

    def _take_roots(self, n: int) -> list[tuple[Graph, Origin]]:
        taken, self.roots = self.roots[:n], self.roots[n:]
        return taken

    def _sized(self, graph: Graph, reasoning: Reasoning) -> Reasoning:
        return replace(reasoning, estimated_memory_mb=round(self.memory_mb(graph), 1))

    def _add(self, candidate: Candidate) -> Candidate:
        self.next_id += 1
        self.pending[candidate.id] = candidate
        return candidate

    def tell(self, candidate_id: int, outcome: Outcome) -> None:
        """Report a trained (or failed) candidate; one that ran out of memory lowers the memory
        limit below it, so nothing as large is proposed again."""
        candidate = self.pending.pop(candidate_id, None)
        if candidate is None:
            raise KeyError(f"candidate {candidate_id} was not asked for, or was told already")
        if outcome.out_of_memory:
            self.memory_limit_mb = min(self.memory_limit_mb, 0.9 * self.memory_mb(candidate.graph))
        self._remember(Observation(candidate, outcome.status, outcome.val_accuracy))

    def _remember(self, observation: Observation) -> None:
        self.observations.append(observation)
        if observation.status is Status.COMPLETE and observation.val_accuracy is not None:
            self._observed(observation.candidate, observation.val_accuracy)

    def complete(self) -> list[Observation]:
        """The trained architectures: what later proposals are morphs of."""
        return [o for o in self.observations if o.status is Status.COMPLETE and o.val_accuracy is not None]

    # --- helpers for strategies ------------------------------------------------------------
    def memory_mb(self, graph: Graph) -> float:
        return estimate_memory_mb(graph, self.batch_size)

    def known(self) -> set[Descriptor]:
        """Architectures already asked (trained, failed or pending): never proposed again."""
        graphs = [o.candidate.graph for o in self.observations] + [c.graph for c in self.pending.values()]
        return {describe(g) for g in graphs}

    def random_child(self, graph: Graph, known: set[Descriptor]) -> Graph | None:
        """One random morph of ``graph`` if it is new and fits in memory (then added to ``known``)."""
        child = random_morph(graph, self.rng, self.limits)
        if child is None or self.memory_mb(child) > self.memory_limit_mb:
            return None
        key = describe(child)
        if key in known:
            return None
        known.add(key)
        return child

    def _observed(self, candidate: Candidate, val_accuracy: float) -> None:
        """Hook for strategies that keep derived state (the Bayesian distance cache)."""

    @abstractmethod
    def _propose(self, n: int) -> list[Proposal]:
        """Return up to ``n`` (graph, parent id, operation, info) tuples."""

    # --- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "schema": SCHEMA,
            "strategy": self.name,
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "seed": self.seed,
            "config": asdict(self.config),
            "batch_size": self.batch_size,
            "memory_limit_mb": self.memory_limit_mb,
            "rng": [version, list(internal), gauss],
            "next_id": self.next_id,
            "roots": [{"graph": g.to_dict(), "origin": asdict(o)} for g, o in self.roots],
            "seed_networks": [g.to_dict() for g in self.seed_networks],
            "pending": [c.to_dict() for c in self.pending.values()],
            "observations": [{"candidate": o.candidate.to_dict(), "status": o.status.value,
                              "val_accuracy": o.val_accuracy} for o in self.observations],
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.next_id = int(state["next_id"])
        self.memory_limit_mb = float(state["memory_limit_mb"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.roots = [(Graph.from_dict(r["graph"]), Origin.from_dict(r["origin"])) for r in state.get("roots", [])]
        if "seed_networks" in state or self.next_id > 1 or self.roots:  # a state from before the key: one seed
            self.seed_networks = [Graph.from_dict(g) for g in state.get("seed_networks", [])]
        self.pending = {c.id: c for c in (Candidate.from_dict(d) for d in state["pending"])}
        self.observations = []
        for o in state["observations"]:
            self._remember(Observation(Candidate.from_dict(o["candidate"]), Status(o["status"]), o["val_accuracy"]))


def operations_between(parent: Graph, child: Graph) -> str:
    """The morphs that made ``child`` from ``parent``, e.g. ``wider_conv+skip_add``."""
    return "+".join(step["op"] for step in child.history[len(parent.history):])


class InitialSearcher(Searcher):
    """Trains only the seed's initial network, for the whole budget (keeping its best epoch): the
    baseline every other strategy must beat."""

    name = "initial"
    until_deadline = True

    def seed_graphs(self) -> list[Graph]:
        return [self.seed_graph()]  # one network, for the whole budget

    def _propose(self, n: int) -> list[Proposal]:
        return []


class RandomSearcher(Searcher):
    """Uniformly random morphs of uniformly random trained architectures: the same space and the same
    training as the Bayesian search, without the model; the honest baseline."""

    name = "random"
    ATTEMPTS = 50

    def _propose(self, n: int) -> list[Proposal]:
        parents = self.complete()
        known = self.known()
        out: list[Proposal] = []
        for _ in range(n * self.ATTEMPTS):
            if len(out) == n or not parents:
                break
            parent = self.rng.choice(parents).candidate
            child = self.random_child(parent.graph, known)
            if child is not None:
                out.append((child, parent.id, operations_between(parent.graph, child), Reasoning()))
        return out
