"""The search strategies by name (``search.strategy``), and restoring one from its saved state."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from automl.arch.graph import Graph
from automl.config import SearchConfig
from automl.errors import SearchError
from automl.search.bayesian import BayesianSearcher
from automl.search.records import SCHEMA, Origin
from automl.search.searcher import InitialSearcher, RandomSearcher, Searcher

STRATEGY_CLASSES: dict[str, type[Searcher]] = {
    "bayesian": BayesianSearcher, "random": RandomSearcher, "initial": InitialSearcher}


def make_searcher(strategy: str, input_shape: tuple[int, ...], n_classes: int, seed: int = 0,
                  config: SearchConfig | None = None, batch_size: int = 128,
                  memory_limit_mb: float = math.inf, roots: Sequence[tuple[Graph, Origin]] = ()) -> Searcher:
    if strategy not in STRATEGY_CLASSES:
        raise ValueError(f"unknown search strategy {strategy!r}; choose from {sorted(STRATEGY_CLASSES)}")
    return STRATEGY_CLASSES[strategy](input_shape, n_classes, seed, config, batch_size, memory_limit_mb, roots)


def searcher_from_state(state: dict[str, Any], where: str = "searcher state") -> Searcher:
    """A searcher exactly as ``to_state`` saved it; a state of another record schema is refused."""
    if state.get("schema") != SCHEMA:
        raise SearchError(f"{where}: written by another version of automl (schema {state.get('schema', 1)}, "
                          f"this one reads {SCHEMA}). Start a new search there.")
    searcher = make_searcher(state["strategy"], tuple(state["input_shape"]), int(state["n_classes"]),
                             int(state["seed"]), SearchConfig(**state["config"]), int(state["batch_size"]),
                             float(state["memory_limit_mb"]))
    searcher._load_state(state)
    return searcher
