"""The run report step: gather the search's records and the final model's test predictions, draw
``reports/<run id>/`` (``automl.report.render``), log it to the MLflow parent run, and write the CSVs that
``dvc plots`` shows (the trajectory, and the test predictions as a confusion matrix)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from prefect import task
from prefect.cache_policies import NO_CACHE

from automl.data.images import read_image, resolve_image_path
from automl.data.labels import read_labels_csv
from automl.errors import AutoMLError
from automl.fileio import read_json, write_csv, write_json
from automl.report.render import render, report_data, trajectory
from automl.search.store import CandidateStore
from automl.session.network import FITTED_MEMBER, MEMBERS, NOTES, SNAPSHOT_MEMBER, Views
from tasks import tracking
from tasks.data import load_labels, load_preprocessor, work_dir
from tasks.model import TEST_PROBABILITIES
from tasks.search import parent_run_of, search_summary
from tasks.settings import PipelineParams

DATA_FILE = "report_data.json"
ARTIFACT_DIR = "report"


@task(name="report", cache_policy=NO_CACHE)
def report(params: PipelineParams) -> dict[str, Any]:
    """Write ``<paths.reports>/<run id>/report.html`` and its PNGs; log them to the parent run."""
    run_id = parent_run_of(params, "report")
    data = collect(params, run_id)
    write_plot_data(params, data)
    return publish(params, run_id, data)


def collect(params: PipelineParams, run_id: str) -> dict[str, Any]:
    """Everything the report shows, from the run's files under ``paths.work``; the raw test images are
    read again only for the misclassified ones (the tensors are normalized and resized)."""
    classes = load_preprocessor(params).classes
    y = load_labels(params.paths.work, "test")
    probabilities = np.load(work_dir(params, TEST_PROBABILITIES), allow_pickle=False)
    names, _ = read_labels_csv(work_dir(params, "split", "test.csv"))
    folder = Path(params.data.images)
    metrics = read_json(Path(params.paths.work, "metrics.json"))
    best = search_summary(params)
    summary = {"test accuracy": metrics["test_accuracy"], "test images": metrics["test_size"],
               "candidates": best["n_candidates"], "failed candidates": best["n_failed"],
               "best candidate": f"#{best['best_id']} (validation accuracy {best['best_val_accuracy']:.4f})",
               "final model": final_model_text(work_dir(params, "final")),
               "search seconds": best["search_seconds"],
               "data": tracking.loggable_params({"csv": params.data.csv})["csv"],
               "generated": time.strftime("%Y-%m-%d %H:%M:%S")}
    meta = {"run_id": run_id, "summary": summary, "params": tracking.loggable_params(params.flat())}
    return report_data(CandidateStore(work_dir(params, "search")).records(),
                       read_json(work_dir(params, "final", "graph.json")), classes, y.numpy(), probabilities,
                       lambda i: read_image(resolve_image_path(folder, names[i])), meta)


def final_model_text(folder: Path) -> str:
    """What the final model is: the best candidate, or the ensemble ``final_fit.ensemble`` and
    ``final_fit.snapshots`` made, and the test-time views it reads each image as (``final_fit.test_shifts``)."""
    notes = [(m / NOTES).read_text().strip() if (m / NOTES).is_file() else "" for m in (folder / MEMBERS).glob("*")]
    snapshots = notes.count(SNAPSHOT_MEMBER)  # save_network marks what the final fit made of each member
    fitted, others = notes.count(FITTED_MEMBER), len(notes) - snapshots
    text = "the best candidate, final-fitted"
    if snapshots:
        cycles = f"{snapshots} earlier cycle{'s' * (snapshots > 1)}"
        text += f", averaged with its weights at the end of {cycles} of that fit"
    how = [f"{fitted} final-fitted too"] * bool(fitted) + \
        [f"{others - fitted} with searched weights"] * (others > fitted)
    text += f"{' and' if snapshots else ', averaged'} with the next {others} ({', '.join(how)})" if others else ""
    views = Views.saved_in(folder)
    return text + (f", over {views.count} shifted copies of each image" if views.count > 1 else "")


def publish(params: PipelineParams, run_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Render into ``<paths.reports>/<run_id>/`` and log the folder as the parent run's ``report/``."""
    out = Path(params.paths.reports, run_id)
    write_json(out / DATA_FILE, data)
    paths = render(data, out)
    tracking.client_for(params).log_artifacts(run_id, str(out), ARTIFACT_DIR)
    return {"html": str(paths["html"]), "folder": str(out)}


def regenerate(params: PipelineParams, run_id: str) -> dict[str, Any]:
    """Draw a run's report again from the data logged with it (``automl report RUN_ID``)."""
    client = tracking.client_for(params)
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        raise AutoMLError(f"run {run_id}: not found in {tracking.tracking_uri(params)} ({exc.message}).") from None
    if DATA_FILE not in {Path(a.path).name for a in client.list_artifacts(run_id, ARTIFACT_DIR)}:
        raise AutoMLError(f"run {run_id}: it has no {ARTIFACT_DIR}/{DATA_FILE} (not a pipeline run, or one made "
                          "before reports existed).")
    data = read_json(client.download_artifacts(run_id, f"{ARTIFACT_DIR}/{DATA_FILE}"))
    return publish(params, run_id, data)


def write_plot_data(params: PipelineParams, data: dict[str, Any]) -> None:
    """``trajectory.csv`` and ``predictions.csv`` under ``paths.work/report/`` for ``dvc plots``."""
    out = work_dir(params, "report")
    fields = ["finished", "candidate", "val_accuracy", "best_so_far"]  # no seconds: a re-run writes the same file
    write_csv(out / "trajectory.csv", fields, [p for p in trajectory(data["candidates"]) if not p.get("failure")])
    matrix, classes = np.asarray(data["confusion"]), data["classes"]
    pairs = [{"actual": classes[i], "predicted": classes[j]} for i in range(len(classes))
             for j in range(len(classes)) for _ in range(int(matrix[i, j]))]
    write_csv(out / "predictions.csv", ["actual", "predicted"], pairs)
