"""MLflow at the edge: the parent run of a pipeline run, a nested run per candidate, the final model.

Everything goes through an explicit ``MlflowClient`` and run ids, not the fluent API's active run,
so mapped candidate tasks running in threads cannot log into each other's runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from automl.fileio import read_json, write_json
from automl.search.records import Candidate, CandidateRecord
from automl.search.store import CandidateStore
from automl.training.trainer import EpochInfo
from tasks.settings import PipelineParams

PARENT_TAG = "mlflow.parentRunId"


@contextmanager
def uri_in_environment(params: PipelineParams) -> Iterator[PipelineParams]:
    """``params`` without ``tracking.uri``, which ``$MLFLOW_TRACKING_URI`` carries instead while the
    block runs (local workers inherit it). Why: Prefect stores a flow's parameters in its database and
    a deployment's with the deployment, and the URI may hold a password."""
    if not params.tracking.uri:
        yield params
        return
    before = os.environ.get(URI_VARIABLE)
    os.environ[URI_VARIABLE] = params.tracking.uri
    try:
        yield params.replace(**{"tracking.uri": ""})
    finally:
        if before is None:
            os.environ.pop(URI_VARIABLE, None)
        else:
            os.environ[URI_VARIABLE] = before


URI_VARIABLE = "MLFLOW_TRACKING_URI"


RUN_FILE = "mlflow_run.json"  # under paths.work, beside the stage outputs but none of them (it names a run)
AFTER_EVALUATE = ("report", "export")  # the stages that run after evaluate, in dvc.yaml and the flow


def tracking_uri(params: PipelineParams) -> str:
    """The param, else ``$MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the project (``default_store``)."""
    return params.tracking.uri or os.environ.get(URI_VARIABLE) or default_store()


def project_root(environ: Mapping[str, str] = os.environ) -> Path:
    """The root of the DVC repo when DVC runs the stage (``$DVC_ROOT``, which DVC sets to the user's repo
    even for ``dvc exp run --temp`` and queued experiments that run in a temporary copy: their runs
    must land where the user looks), else the working directory."""
    return Path(environ.get("DVC_ROOT") or Path.cwd())


def default_store() -> str:
    """``mlflow.db`` in the project root, its artifacts in ``mlruns/`` beside it."""
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def client_for(params: PipelineParams) -> MlflowClient:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return MlflowClient(tracking_uri=tracking_uri(params))


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if new; in the default store with its artifacts in the project root
    (MLflow would put them in the working directory, a temporary one under ``dvc exp run --temp``)."""
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    default = client.tracking_uri == default_store()
    return client.create_experiment(name, (project_root() / "mlruns").as_uri() if default else None)


def start_parent_run(params: PipelineParams, tags: Mapping[str, str] = {}, stage: str = "search") -> str:
    """Create the pipeline's parent run with every param, a name that tells runs apart in the UI (data,
    strategy, budget, DVC experiment) and the tags that say what produced it (code commit, data digest,
    DVC experiment and lock); record it under ``paths.work`` as the run ``stage`` and the stages after it
    log into; return its id."""
    client = client_for(params)
    run = client.create_run(experiment_id(client, params.tracking.experiment), run_name=run_name(params),
                            tags={"automl.kind": "pipeline", **provenance(params), **dvc_tags(), **tags})
    shown = loggable_params(params.flat())
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in sorted(shown.items())])
    record_run(params, {"parent_run_id": run.info.run_id, "stages": [stage]})
    return run.info.run_id


def run_name(params: PipelineParams, environ: Mapping[str, str] = os.environ) -> str:
    data = params.data.source or Path(params.data.csv).parent.name or Path(params.data.csv).stem
    name = f"{data}-{params.search.strategy}-{params.search.time_limit:.0f}s"
    return f"{environ['DVC_EXP_NAME']}-{name}" if environ.get("DVC_EXP_NAME") else name


def dvc_tags(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Under ``dvc exp run``: the experiment's name and baseline commit (DVC sets both; the commit is the
    one ``dvc exp show`` lists it under); under any DVC run: the digest of the ``dvc.lock`` it started from."""
    tags = {}
    if environ.get("DVC_EXP_NAME"):
        tags["automl.dvc_experiment"] = environ["DVC_EXP_NAME"]
    if environ.get("DVC_EXP_BASELINE_REV"):
        tags["mlflow.source.git.commit"] = environ["DVC_EXP_BASELINE_REV"]
    if environ.get("DVC_ROOT") and Path("dvc.lock").is_file():
        tags["automl.dvc_lock_sha256"] = hashlib.sha256(Path("dvc.lock").read_bytes()).hexdigest()
    return tags


def record_run(params: PipelineParams, run: dict[str, Any]) -> None:
    """The pipeline run's MLflow ids and the stages that logged into it, in ``paths.work/mlflow_run.json``:
    how the stages of one run (separate processes under DVC) find their parent run. Not a DVC output:
    it must not travel to a teammate or make the next ``dvc exp run`` log into this run."""
    write_json(Path(params.paths.work, RUN_FILE), run)


def recorded_run(params: PipelineParams) -> dict[str, Any]:
    """What ``record_run`` last wrote in ``paths.work`` (empty if nothing)."""
    path = Path(params.paths.work, RUN_FILE)
    return read_json(path) if path.is_file() else {}


def open_parent_run(params: PipelineParams, stage: str, search: Mapping[str, Any],
                    evaluation: Mapping[str, Any] | None = None) -> str:
    """The parent run ``stage`` (a step after the search) logs into: the recorded one if ``stage`` has not
    logged into it yet (the same pipeline run), else a new one: a run that reuses a finished search
    (``dvc exp run -S final_fit.epochs=50``) gets its own parent run instead of writing into an earlier one.
    A new one is tagged with the search's run (``automl.search_run_id``: the candidate runs are its
    children) and gets the search's summary and the current ``evaluation`` (``metrics.json``): DVC skips
    ``evaluate`` when the final model came out the same, and the run must still show its test accuracy
    (so does the recorded run, when a stage after ``evaluate`` finds that it never logged into it)."""
    run = recorded_run(params)
    if run.get("parent_run_id") and stage not in (stages := run.get("stages", [])):
        record_run(params, {**run, "stages": [*stages, stage]})
        client_for(params).update_run(run["parent_run_id"], "RUNNING")
        if evaluation and stage in AFTER_EVALUATE and "evaluate" not in stages:  # DVC found it in its run cache
            log_metrics(params, run["parent_run_id"], evaluation_metrics(evaluation))
        return run["parent_run_id"]
    run_id = start_parent_run(params, {"automl.search_run_id": search.get("parent_run_id") or ""}, stage)
    log_metrics(params, run_id, {**search_metrics(search), **(evaluation_metrics(evaluation) if evaluation else {})})
    return run_id


def evaluation_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics.json``'s test figures under their MLflow names (a class label made a valid key)."""
    return {"test_accuracy": metrics["test_accuracy"],
            **{f"test_accuracy.{metric_key(label)}": acc for label, acc in metrics["per_class_accuracy"].items()}}


def settle_stage(params: PipelineParams, stage: str, status: str) -> None:
    """After a DVC stage (its own process): the parent run it logged into is FINISHED (or FAILED) until
    the next stage reopens it, so an experiment that stops early leaves no run marked running."""
    run = recorded_run(params)
    if stage in run.get("stages", []):
        finish_run(params, run["parent_run_id"], status)


def search_metrics(search: Mapping[str, Any]) -> dict[str, float]:
    """The search step's summary (``best.json``) under the names ``metrics.json`` uses."""
    return {"search_best_val_accuracy": search["best_val_accuracy"], "best_candidate_id": search["best_id"],
            **{k: search[k] for k in ("n_candidates", "n_failed", "search_seconds")}}


def provenance(params: PipelineParams) -> dict[str, str]:
    """MLflow tags naming the code's git commit (MLflow's own tag, shown in the UI) and the labels
    CSV's digest, so two runs on other data or code are told apart."""
    import automl

    tags = {"automl.version": automl.__version__}
    csv_path = Path(params.data.csv)
    if csv_path.is_file():
        tags["automl.data_csv_sha256"] = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    try:  # under DVC the project's commit (dvc_tags: an experiment's baseline), else this code's
        where = os.environ.get("DVC_ROOT") or Path(__file__).parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=where)
        if commit.returncode == 0:
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git here: the tag is left out
        pass
    return tags


def metric_key(text: str) -> str:
    """``text`` in the characters MLflow allows in a metric name (a class label may hold any)."""
    return re.sub(r"[^\w\-. /]", "_", str(text))[:200] or "_"


def now_ms() -> int:
    """Metric timestamps: the real time, so a metric logged again shows its latest value, not the largest."""
    return int(time.time() * 1000)


def loggable_params(flat: dict[str, Any]) -> dict[str, Any]:
    """PipelineParams as a teammate may see them in a shared MLflow: no tracking URI (it may carry a password)
    and no absolute path (it names a user's home and folders): paths inside the working directory
    become relative, others keep only their last part."""
    out = {}
    for key, value in flat.items():
        if key == "tracking.uri":
            continue
        if isinstance(value, str) and os.path.isabs(value):
            path = Path(value)
            value = str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else f".../{path.name}"
        out[key] = value
    return out


def reopen_parent_run(params: PipelineParams, run_id: str, store: CandidateStore) -> None:
    """A resumed run logs into its old parent run: mark it running again, and settle the candidate
    runs the crash left running. The store is written before MLflow, so a candidate whose record is
    final gets its run finished from that record; the others are marked killed (they train again)."""
    client = client_for(params)
    client.update_run(run_id, "RUNNING")
    logger = MlflowCandidateLogger(params, run_id)
    query = f"tags.`{PARENT_TAG}` = '{run_id}' and attributes.status = 'RUNNING'"
    for run in client.search_runs([logger.experiment_id], query):
        candidate_id = int(run.data.tags["automl.candidate_id"])
        record = store.record(candidate_id)
        if record is None or not record.status.finished:
            client.set_terminated(run.info.run_id, "KILLED")
            continue
        logger.runs[candidate_id] = run.info.run_id
        weights = store.weights_path(candidate_id) if record.succeeded else None
        logger.on_candidate_end(Candidate(candidate_id, store.graph(candidate_id)), record, weights)


def finish_run(params: PipelineParams, run_id: str, status: str = "FINISHED") -> None:
    client_for(params).set_terminated(run_id, status)


def log_metrics(params: PipelineParams, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    client_for(params).log_batch(run_id, metrics=[Metric(k, float(v), now_ms(), step) for k, v in metrics.items()])


class MlflowCandidateLogger:
    """A search callback: one nested run per candidate with its graph, metrics, weights and lineage."""

    def __init__(self, params: PipelineParams, parent_run_id: str) -> None:
        self.client = client_for(params)
        self.train_params = [Param(k, str(v)) for k, v in sorted(params.flat().items()) if k.startswith("train.")]
        self.experiment_id = self.client.get_run(parent_run_id).info.experiment_id
        self.parent_run_id = parent_run_id
        self.runs: dict[int, str] = {}
        self._lock = threading.Lock()

    def on_candidate_start(self, candidate: Candidate) -> None:
        tags = {PARENT_TAG: self.parent_run_id, "automl.kind": "candidate",
                "automl.candidate_id": str(candidate.id),
                "automl.parent_candidate": str(candidate.parent_id) if candidate.parent_id else "none",
                "automl.operation": candidate.operation or "none",
                "automl.worker": f"{socket.gethostname()}:{os.getpid()}"}  # which process trained it
        if candidate.origin is not None:  # a warm start's root: the earlier run's candidate it is
            tags |= {"automl.origin_run": candidate.origin.source,
                     "automl.origin_candidate": str(candidate.origin.candidate),
                     "automl.origin_head_reset": str(candidate.origin.head_reset).lower()}
        run = self.client.create_run(self.experiment_id, run_name=f"candidate-{candidate.id:04d}", tags=tags)
        with self._lock:
            self.runs[candidate.id] = run.info.run_id
        reasoning = [Metric(f"searcher.{k}", float(v), now_ms(), 0)
                     for k, v in candidate.reasoning.metrics().items()]  # UCB, GP mean and std, estimated memory
        size = Metric("n_params", float(candidate.graph.param_count()), now_ms(), 0)
        self.client.log_batch(run.info.run_id, metrics=reasoning + [size], params=[
            Param("architecture", candidate.graph.describe()[:500]), *self.train_params])
        self.client.log_text(run.info.run_id, candidate.graph.to_json(), "graph.json")

    def on_epoch(self, candidate: Candidate, info: EpochInfo) -> None:
        metrics = {"train_loss": info.train_loss, "epoch_seconds": info.seconds}
        if info.val_accuracy is not None and info.val_loss is not None:
            metrics["val_accuracy"], metrics["val_loss"] = info.val_accuracy, info.val_loss
        self.client.log_batch(self.runs[candidate.id],
                              metrics=[Metric(k, float(v), now_ms(), info.epoch) for k, v in metrics.items()])

    def on_candidate_end(self, candidate: Candidate, record: CandidateRecord, weights_path: Path | None) -> None:
        run_id = self.runs[candidate.id]
        final = {"best_val_accuracy": record.val_accuracy, "best_val_loss": record.val_loss,
                 "score": record.ranking_score, "epochs": record.epochs, "train_seconds": record.train_seconds,
                 "inherited_val_accuracy": record.inherited_val_accuracy}
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms(), 0) for k, v in final.items()
                                               if v is not None],
                              tags=[RunTag("automl.status", record.status.value)])
        if weights_path is not None:
            self.client.log_artifact(run_id, str(weights_path))
        if record.error:
            self.client.log_text(run_id, record.error, "error.txt")
        self.client.set_terminated(run_id, "FINISHED" if record.succeeded else "FAILED")


def log_pyfunc_model(params: PipelineParams, run_id: str, export_paths: dict[str, Path], example: Any) -> str:
    """Log the exported TorchScript model as an MLflow pyfunc whose ``predict`` takes raw images and
    returns labels (class probabilities with the param ``probabilities``), with a signature that serving
    enforces: uint8 pixels, a batch of any size, images of any height and width, the channels of
    ``example`` (a batch of real images, saved as the input example). Returns the model URI."""
    import mlflow
    import numpy
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    signature = ModelSignature(inputs=Schema([TensorSpec(numpy.dtype(numpy.uint8), (-1,) * 3 + example.shape[3:])]),
                               params=ParamSchema([ParamSpec("probabilities", "boolean", False)]))
    mlflow.set_tracking_uri(tracking_uri(params))
    code = Path(__file__).with_name("pyfunc_model.py")
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code), signature=signature, input_example=example,
            artifacts={"torchscript": str(export_paths["torchscript"]), "labels": str(export_paths["labels"])},
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={numpy.__version__}"])
    return info.model_uri
