"""DVC stages: ``automl stage NAME`` runs one task body (``task.fn``) with ``params.yaml``.

Each stage imports only its own module: every stage is a new process, and the data stages need
neither MLflow nor the model code (seconds of imports per stage, seven stages per ``dvc repro``).
"""

from __future__ import annotations

import importlib
from typing import Any

from automl.errors import ConfigError
from tasks.settings import PipelineParams

STAGES: dict[str, str] = {  # stage -> module:function (a Prefect task's body, or the search step)
    "ingest": "tasks.data:ingest",
    "split": "tasks.data:split",
    "preprocess": "tasks.data:preprocess",
    "search": "tasks.search:run_search_step",
    "final_fit": "tasks.model:final_fit",
    "evaluate": "tasks.model:evaluate",
    "report": "tasks.report:report",
    "export": "tasks.model:export",
}


def run_stage(name: str, params: PipelineParams) -> Any:
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
    module, attr = STAGES[name].split(":")
    body = getattr(importlib.import_module(module), attr)
    return getattr(body, "fn", body)(params)  # a Prefect task runs its plain function, outside any flow
