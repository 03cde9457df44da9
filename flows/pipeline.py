"""The pipeline flow: ingest -> split -> preprocess -> search (a mapped task per candidate) -> final fit
-> evaluate -> report -> export, all tracked under one MLflow parent run. It contains no algorithm of its own."""

from __future__ import annotations

import os
import sys
import time
import zoneinfo
from typing import Any, Callable

from prefect import flow
from prefect.task_runners import TaskRunner

from automl.config import from_dict
from automl.errors import ConfigError, describe_error, stops_the_run
from automl.search.loop import BatchTrainer
from automl.search.records import Candidate, CandidateRecord
from automl.search.store import CandidateStore
from automl.timing import Stopwatch
from flows import runners
from tasks import data, model, remote, report, tracking
from tasks.search import best_accuracy, run_search_step, session_of, train_candidate_task
from tasks.settings import PipelineParams


def mapped_trainer(runner: TaskRunner, quiet: bool) -> Callable[[PipelineParams, str], BatchTrainer]:
    """Train each round's candidates as Prefect tasks on ``runner`` (started by the caller). A task
    that crashes (its own code records ordinary failures) becomes a failed record, not a failed flow.
    Workers that may not share this disk exchange data and weights through MLflow (``tasks.remote``)."""

    def make(params: PipelineParams, parent_run_id: str) -> BatchTrainer:
        store = session_of(params).store
        local = runners.shares_disk(params)
        if not local:
            remote.publish_data(params, parent_run_id)
        train = train_candidate_task if local else remote.train_candidate_remote
        sent = runners.worker_params(params)

        def train_batch(candidates: list[Candidate], deadline: float) -> list[CandidateRecord]:
            common = {"params": sent, "deadline": deadline, "parent_run_id": parent_run_id, "quiet": quiet,
                      "best": best_accuracy(store)}
            futures = [runner.submit(train, {"candidate": c.to_dict(), **common}) for c in candidates]
            return [_result(future, candidate, store, local, params) for future, candidate in zip(futures, candidates)]
        return train_batch

    return make


def _result(future: Any, candidate: Candidate, store: CandidateStore, local: bool,
            params: PipelineParams) -> CandidateRecord:
    try:
        record = future.result()
        return record if local else remote.adopt(params, candidate, record, store)
    except Exception as exc:
        if stops_the_run(exc):
            raise
        return store.fail(candidate, describe_error(exc))


def _report(params: PipelineParams) -> dict[str, Any]:
    """The run report, or why there is none: a report that cannot be drawn does not cost the user the
    model, which is exported next either way."""
    try:
        return report.report(params)
    except Exception as exc:
        if stops_the_run(exc):
            raise
        print(f"[report] not written: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
        return {"error": f"{exc.__class__.__name__}: {exc}"}


def _stage(name: str, quiet: bool) -> None:
    if not quiet:
        print(f"[{name}] {time.strftime('%H:%M:%S')}", flush=True)


def flow_params(params: dict[str, Any], overrides: dict[str, Any] | None) -> PipelineParams:
    """The flow's params: whole sections, then ``overrides``. Why both: Prefect replaces a deployment's
    ``params`` with whatever a run passes instead of merging it, so ``--param params='{"search": ...}'``
    would silently drop the deployment's data and settings; a run changes keys through ``overrides``,
    and a ``params`` missing sections is refused."""
    missing = [section for section in PipelineParams().to_dict() if section not in params]
    if missing:
        raise ConfigError(f"params lacks {', '.join(missing)}: a run replaces the deployment's whole params. "
                          "Change single keys with overrides instead, e.g. --param "
                          "'overrides={\"search.time_limit\": 60}'.")
    return from_dict(params, "params", PipelineParams).replace(**(overrides or {}))


def _run_name() -> str:
    """The flow run's name in the Prefect UI: data, strategy and budget, as the MLflow parent run's."""
    from prefect.runtime import flow_run

    try:
        return tracking.run_name(flow_params(flow_run.parameters["params"], flow_run.parameters.get("overrides")))
    except ConfigError:  # the flow body says why, in the run's log
        return "automl-pipeline"


def _artifacts(p: PipelineParams, metrics: dict[str, Any], exported: dict[str, Any], reported: dict[str, Any]) -> None:
    """What the Prefect UI shows of a finished run: the outcome in a few lines, and every candidate."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(
        f"**Test accuracy {metrics['test_accuracy']:.4f}** on {metrics['test_size']} images; best search "
        f"validation accuracy {metrics['search_best_val_accuracy']:.4f}, {metrics['n_candidates']} candidates.\n\n"
        f"MLflow model: `{exported['model_uri']}` (run `{exported['run_id']}`); "
        f"report: `{reported.get('html', 'not written')}`", key="automl-result", description="the run's outcome")
    create_table_artifact([{"id": r.id, "parent": r.parent_id, "operation": r.operation, "status": r.status.value,
                            "val_accuracy": r.val_accuracy, "n_params": r.n_params}
                           for r in CandidateStore(data.work_dir(p, "search")).records()],
                          key="automl-candidates", description="every candidate of the search")


@flow(name="automl-pipeline", flow_run_name=_run_name)
def pipeline(params: dict[str, Any], quiet: bool = False, resume: bool = False,
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the whole pipeline with ``params`` (the nested form of ``params.yaml``) and ``overrides``
    (dotted keys over it: ``{"search.time_limit": 60}``); ``resume`` continues the search a killed run
    left under ``paths.work`` (its MLflow parent run too). The result's ``timing`` says when the flow
    body started (the caller knows when it called) and how long data preparation and the start of
    MLflow tracking took."""
    clock = Stopwatch()
    timing = {"started_at": time.time()}
    p = flow_params(params, overrides)
    with clock("data_seconds"):
        _stage("ingest", quiet)
        ingested = data.ingest(p, quiet)
        _stage("split", quiet)
        split = data.split(p)
        _stage("preprocess", quiet)
        data.preprocess(p, quiet)
    with clock("tracking_start_seconds"):
        parent_run_id = None if resume else tracking.start_parent_run(p)  # resuming: the search's own
    timing.update(clock.rounded())
    try:
        _stage("search", quiet)
        with runners.candidate_runner(p) as runner:
            searched = run_search_step(p, parent_run_id, make_trainer=mapped_trainer(runner, quiet), resume=resume,
                                       quiet=quiet)
        parent_run_id = searched["parent_run_id"]
        _stage("final_fit", quiet)
        model.final_fit(p, quiet)
        _stage("evaluate", quiet)
        metrics = model.evaluate(p)
        _stage("report", quiet)
        reported = _report(p)
        _stage("export", quiet)
        exported = model.export(p)
        _artifacts(p, metrics, exported, reported)
        tracking.finish_run(p, parent_run_id)
    except BaseException:
        if parent_run_id:  # unknown when a resumed search failed: its run is left as the crash left it
            tracking.finish_run(p, parent_run_id, "FAILED")
        raise
    return {"ingest": ingested, "split": split, "search": searched, "metrics": metrics, "report": reported,
            "export": exported, "timing": timing}


def run_pipeline(params: PipelineParams, quiet: bool = False, resume: bool = False) -> dict[str, Any]:
    with tracking.uri_in_environment(params) as public:
        return pipeline(public.to_dict(), quiet, resume)


def serve(params: PipelineParams, name: str, cron: str | None, timezone: str = "UTC") -> None:
    """Register the pipeline as a deployment with ``params`` and ``cron`` (read in ``timezone``), then
    run its scheduled and on-demand runs in this process until stopped (Prefect's ``flow.serve``). The
    schedule stays active when this process stops, so a restarted server picks it up again."""
    from prefect.schedules import Cron

    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--timezone {timezone!r}: not a time zone name (IANA, e.g. Europe/Berlin or UTC).") from None
    schedules = [Cron(cron, timezone=timezone)] if cron else None
    with tracking.uri_in_environment(params) as public:  # scheduled runs inherit this process's environment
        # Prefect's log_prints for the runs (they inherit it): stage and candidate lines in each run's log
        os.environ["PREFECT_LOGGING_LOG_PRINTS"] = "true"
        pipeline.serve(name=name, schedules=schedules, parameters={"params": public.to_dict(), "quiet": False},
                       pause_on_shutdown=False, tags=["automl"])
