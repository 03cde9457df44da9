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


TRACKED = ("search", "final_fit", "evaluate", "report", "export")  # stages that log into the MLflow parent run


def run_stage(name: str, params: PipelineParams) -> Any:
    """Run the stage's body; a tracked stage leaves its parent run FINISHED, or FAILED if it raised
    (the next stage of the same run reopens it)."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
    module, attr = STAGES[name].split(":")
    body = getattr(importlib.import_module(module), attr)
    if name not in TRACKED:
        return getattr(body, "fn", body)(params)  # a Prefect task runs its plain function, outside any flow
    from tasks import tracking

    try:
        result = getattr(body, "fn", body)(params)
    except BaseException:
        tracking.settle_stage(params, name, "FAILED")
        raise
    tracking.settle_stage(params, name, "FINISHED")
    return result
