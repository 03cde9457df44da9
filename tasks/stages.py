"""DVC stages: ``automl stage NAME`` runs one task body (``task.fn``) with ``params.yaml``."""

from __future__ import annotations

from typing import Any, Callable

from automl.config import Params
from tasks import data, model, search

STAGES: dict[str, Callable[[Params], Any]] = {
    "ingest": data.ingest.fn,
    "split": data.split.fn,
    "preprocess": data.preprocess.fn,
    "search": search.run_search_step,
    "final_fit": model.final_fit.fn,
    "evaluate": model.evaluate.fn,
    "export": model.export.fn,
}


def run_stage(name: str, params: Params) -> Any:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
    return STAGES[name](params)
