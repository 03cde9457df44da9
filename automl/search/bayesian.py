"""Bayesian optimization over network morphisms (Auto-Keras): a GP on the architecture edit distance
picks children of trained architectures by UCB, found by a tree-structured search with simulated
annealing over morph sequences.

Differences from Auto-Keras 0.4, on purpose: the optimizer is a method of this searcher and never calls
back into a driver; settings come from a frozen ``SearchConfig``; the kernel is positive semi-definite
by construction (``automl.search.kernel``); a batch of ``n`` distinct proposals comes from one ``ask`` by the
kriging believer (each chosen child joins the GP as a fantasy observation at its predicted mean), and
candidates still training are fantasies too, so proposals computed while they train do not repeat them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.arch.graph import Graph
from automl.search.gp import GaussianProcess, ucb
from automl.search.kernel import Descriptor, DistanceCache, describe
from automl.search.records import Candidate, Reasoning
from automl.search.searcher import Proposal, Searcher, operations_between


@dataclass
class _Node:
    """A point of the annealing tree: an architecture, the trained root it descends from, its score."""

    graph: Graph
    root: Candidate
    score: float


class BayesianSearcher(Searcher):
    name = "bayesian"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache = DistanceCache(self.config.kernel_lambda)
        self.targets: list[float] = []

    def _observed(self, candidate: Candidate, val_accuracy: float) -> None:
        self.cache.add(describe(candidate.graph))
        self.targets.append(val_accuracy)

    def _propose(self, n: int) -> list[Proposal]:
        roots = self.complete()
        if not roots:
            return []
        known = self.known()
        prior = float(np.mean(self.targets))
        fantasies = [(describe(c.graph), prior if c.reasoning.gp_mean is None else c.reasoning.gp_mean)
                     for c in self.pending.values()]
        out: list[Proposal] = []
        for _ in range(n):
            model = _Model(self.cache, self.targets, fantasies)
            found = self._optimize(model, roots, known)
            if found is None:
                break
            out.append(found)
            known.add(describe(found[0]))
            fantasies.append((describe(found[0]), found[3].gp_mean))
        return out

    def _optimize(self, model: "_Model", roots: list, known: set[Descriptor]) -> Proposal | None:
        """Tree search from every trained architecture; a child joins the tree with the annealing
        acceptance probability exp((acq - parent score) / T); the best acquisition seen wins."""
        cfg = self.config
        order = itertools.count()
        heap = [(-o.val_accuracy, next(order), _Node(o.candidate.graph, o.candidate, o.val_accuracy)) for o in roots]
        heapq.heapify(heap)
        best: tuple[float, Graph, Candidate, float, float] | None = None
        seen = set(known)
        temperature = cfg.t_init
        while heap and temperature > cfg.t_min:
            node = heapq.heappop(heap)[2]
            children = self._neighbours(node.graph, seen)
            if children:
                post = model.predict([describe(g) for g in children])
                scores = ucb(post, cfg.beta)
                for graph, score, mean, std in zip(children, scores, post.mean, post.std):
                    if best is None or score > best[0]:
                        best = (float(score), graph, node.root, float(mean), float(std))
                    accept = math.exp(min(0.0, (score - node.score) / temperature))
                    if self.rng.random() < accept and self._extendable(graph, node.root):
                        heapq.heappush(heap, (-float(score), next(order), _Node(graph, node.root, float(score))))
            temperature *= cfg.anneal_decay
        if best is None:
            return None
        score, graph, root, mean, std = best
        why = Reasoning(ucb=round(score, 6), gp_mean=round(mean, 6), gp_std=round(std, 6))
        return graph, root.id, operations_between(root.graph, graph), why

    def _extendable(self, graph: Graph, root: Candidate) -> bool:
        """Whether the tree may grow ``graph`` further: under ``search.max_chain`` n, a proposal is at
        most n morphs from the trained network it inherits from. A long chain of widen and narrow steps
        can net to a near-copy of its parent whose inherited weights each narrowing has perturbed (the
        kept units' outgoing weights stay divided among copies that are gone)."""
        limit = self.config.max_chain
        return not limit or len(graph.history) - len(root.graph.history) < limit

    def _neighbours(self, graph: Graph, seen: set[Descriptor]) -> list[Graph]:
        children = (self.random_child(graph, seen) for _ in range(self.config.neighbours))
        return [child for child in children if child is not None]


class _Model:
    """The GP fitted on observed architectures plus fantasies, predicting for query descriptors."""

    def __init__(self, cache: DistanceCache, targets: list[float], fantasies: list[tuple[Descriptor, float]]) -> None:
        self.cache = cache
        self.fantasies = [d for d, _ in fantasies]
        n, f = len(cache.items), len(fantasies)
        D = np.zeros((n + f, n + f))
        D[:n, :n] = cache.matrix()
        if f:
            cross = cache.to(self.fantasies)  # (f, n)
            D[n:, :n], D[:n, n:] = cross, cross.T
            D[n:, n:] = cache.between(self.fantasies, self.fantasies)
        y = np.array(list(targets) + [v for _, v in fantasies], dtype=float)
        self.gp = GaussianProcess().fit(D, y)

    def predict(self, queries: list[Descriptor]):
        rows = self.cache.to(queries)
        if self.fantasies:
            rows = np.hstack([rows, self.cache.between(queries, self.fantasies)])
        return self.gp.predict(rows)
