"""The search strategies by name (``search.strategy``), and restoring one from its saved state."""

from __future__ import annotations

from typing import Any

from automl.search.bayesian import BayesianSearcher
from automl.config import SearchConfig
from automl.search.searcher import InitialSearcher, RandomSearcher, Searcher

STRATEGY_CLASSES: dict[str, type[Searcher]] = {
    "bayesian": BayesianSearcher, "random": RandomSearcher, "initial": InitialSearcher}


def make_searcher(strategy: str, input_shape: tuple[int, ...], n_classes: int, seed: int = 0,
                  config: SearchConfig | None = None, batch_size: int = 128) -> Searcher:
    if strategy not in STRATEGY_CLASSES:
        raise ValueError(f"unknown search strategy {strategy!r}; choose from {sorted(STRATEGY_CLASSES)}")
    return STRATEGY_CLASSES[strategy](input_shape, n_classes, seed, config, batch_size)


def searcher_from_state(state: dict[str, Any]) -> Searcher:
    searcher = make_searcher(state["strategy"], tuple(state["input_shape"]), int(state["n_classes"]),
                             int(state["seed"]), SearchConfig(**state["config"]), int(state["batch_size"]))
    searcher._load_state(state)
    return searcher
