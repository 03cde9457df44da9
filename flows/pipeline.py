"""The pipeline flow: ingest -> split -> preprocess -> search (a mapped task per candidate) -> final fit
-> evaluate -> export, all tracked under one MLflow parent run. It contains no algorithm of its own."""

from __future__ import annotations

import time
from typing import Any, Callable

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from automl.config import Params, from_dict
from automl.search import BatchTrainer
from automl.searcher import Candidate
from automl.timing import Stopwatch
from tasks import data, model, tracking
from tasks.search import run_search_step, train_candidate_task


def mapped_trainer(quiet: bool) -> Callable[[Params, str], BatchTrainer]:
    """Train each round's candidates as mapped Prefect tasks on the flow's task runner."""

    def make(params: Params, parent_run_id: str) -> BatchTrainer:
        def train_batch(candidates: list[Candidate], deadline: float) -> list[dict[str, Any]]:
            futures = train_candidate_task.map([c.to_dict() for c in candidates], unmapped(params),
                                               unmapped(deadline), unmapped(parent_run_id), unmapped(quiet))
            return [f.result() for f in futures]
        return train_batch

    return make


def _stage(name: str, quiet: bool) -> None:
    if not quiet:
        print(f"[{name}] {time.strftime('%H:%M:%S')}", flush=True)


@flow(name="automl-pipeline")
def pipeline(params: dict[str, Any], quiet: bool = False) -> dict[str, Any]:
    """Run the whole pipeline with ``params`` (the nested form of ``params.yaml``). The result's
    ``timing`` says when the flow body started (the caller knows when it called) and how long data
    preparation and the start of MLflow tracking took."""
    clock = Stopwatch()
    timing = {"started_at": time.time()}
    p = from_dict(params)
    with clock("data_seconds"):
        _stage("ingest", quiet)
        ingested = data.ingest(p)
        _stage("split", quiet)
        split = data.split(p)
        _stage("preprocess", quiet)
        data.preprocess(p)
    with clock("tracking_start_seconds"):
        parent_run_id = tracking.start_parent_run(p)
    timing.update(clock.rounded())
    try:
        _stage("search", quiet)
        searched = run_search_step(p, parent_run_id, make_trainer=mapped_trainer(quiet))
        _stage("final_fit", quiet)
        model.final_fit(p, quiet)
        _stage("evaluate", quiet)
        metrics = model.evaluate(p)
        _stage("export", quiet)
        exported = model.export(p)
    except BaseException:
        tracking.finish_run(p, parent_run_id, "FAILED")
        raise
    return {"ingest": ingested, "split": split, "search": searched, "metrics": metrics, "export": exported,
            "timing": timing}


def run_pipeline(params: Params, quiet: bool = False) -> dict[str, Any]:
    """Run the flow with a thread pool sized for ``search.parallel`` candidates at once."""
    runner = ThreadPoolTaskRunner(max_workers=params.search.parallel)
    return pipeline.with_options(task_runner=runner)(params.to_dict(), quiet)
