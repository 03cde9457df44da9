"""Final fit, evaluation and export of the searched network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from automl.data.images import read_image, resolve_image_path
from automl.export.model import export_model
from automl.fileio import atomic_path, read_json, write_csv, write_json
from automl.report.progress import ConsoleProgress
from automl.session import load_network
from automl.training.trainer import class_accuracies, predict_logits
from tasks import registry, tracking
from tasks.data import load_preprocessor, load_split, load_tensors, split_rows, work_dir
from tasks.search import parent_run_of, session_of
from tasks.settings import PipelineParams

TEST_PROBABILITIES = "test_probabilities.npy"  # under paths.work: (test images, classes) float32


@task(name="final-fit", cache_policy=NO_CACHE)
def final_fit(params: PipelineParams, quiet: bool = False) -> dict[str, Any]:
    """Train the best architecture on train+val: from its searched weights, or from scratch when
    ``final_fit.retrain``. Writes ``final/{graph.json,weights.pt}``, any ensemble members
    (``final_fit.ensemble``; the first ``final_fit.fitted_members`` - 1 final-fitted too) in
    ``final/members/``, its test-time views (``final_fit.test_shifts``) in ``final/views.json``, and the
    loss curve ``final_curves.csv``."""
    session = session_of(params)
    best_id = read_json(work_dir(params, "search", "best.json"))["best_id"]
    data = load_tensors(params.paths.work, train=("train", "val"), val=None)
    progress = None if quiet else ConsoleProgress(None)
    out = work_dir(params, "final")
    final = session.final_fit(session.store.graph(best_id), session.store.weights(best_id), data, out,
                              members=session.ensemble_members(best_id), on_epoch=progress and progress.final_epoch)
    if progress:
        progress.final_done(final.fit_accuracy, final.searched_fit_accuracy, final.kept_searched)
    write_csv(work_dir(params, "final_curves.csv"), ["epoch", "train_loss"], final.result.history)
    run_id = parent_run_of(params, "final_fit")
    for row in final.result.history:
        tracking.log_metrics(params, run_id, {"final_fit_train_loss": row["train_loss"]}, step=row["epoch"])
    tracking.log_metrics(params, run_id, {"final_fit_accuracy": final.fit_accuracy,
                                          "final_fit_kept_searched": float(final.kept_searched)})
    return {"epochs": final.result.epochs, "train_seconds": final.result.train_seconds,
            "retrain": params.final_fit.retrain, "fit_accuracy": final.fit_accuracy,
            "kept_searched": final.kept_searched, "ensemble": 1 + len(final.members),
            "fitted_members": final.fitted_members, "test_views": final.views.count}


def load_final(params: PipelineParams) -> torch.nn.Module:
    return load_network(work_dir(params, "final"))[1]


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(params: PipelineParams) -> dict[str, Any]:
    """Test accuracy (overall and per class) of the final model, written to ``metrics.json``, and its
    class probabilities for each test image (``TEST_PROBABILITIES``, which the report reads)."""
    model = load_final(params)
    x, y = load_split(params.paths.work, "test")
    probabilities = torch.softmax(predict_logits(model, x), 1)
    with atomic_path(work_dir(params, TEST_PROBABILITIES)) as tmp, tmp.open("wb") as handle:
        np.save(handle, probabilities.numpy())  # the report's, so the test split is scored once
    pred = probabilities.argmax(1)
    per_class = class_accuracies(y.numpy(), pred.numpy(), load_preprocessor(params).classes)
    best = read_json(work_dir(params, "search", "best.json"))
    metrics = {"test_accuracy": float((pred == y).float().mean()), "test_size": int(len(y)),
               "search_best_val_accuracy": best["best_val_accuracy"], "n_candidates": best["n_candidates"],
               "per_class_accuracy": per_class}
    write_json(Path(params.paths.work, "metrics.json"), metrics)
    tracking.log_metrics(params, parent_run_of(params, "evaluate"), tracking.evaluation_metrics(metrics))
    return metrics


def input_example(params: PipelineParams, count: int = 2) -> np.ndarray:
    """The first test images of the first one's shape, decoded as a user would send them (uint8)."""
    rows = split_rows(params, "test")[:8]
    images = [read_image(resolve_image_path(Path(params.data.images), row.name)) for row in rows]
    return np.stack([img for img in images if img.shape == images[0].shape][:count])


@task(name="export", cache_policy=NO_CACHE)
def export(params: PipelineParams) -> dict[str, Any]:
    """TorchScript, ONNX and labels under ``paths.export``; the MLflow pyfunc model in the parent run,
    registered in the Model Registry (see ``tasks.registry``)."""
    paths = export_model(load_final(params), load_preprocessor(params), params.paths.export)
    run_id = parent_run_of(params, "export")
    model_uri = tracking.log_pyfunc_model(params, run_id, paths, input_example(params))
    registered = None
    if params.tracking.registered_model:
        test_accuracy = read_json(Path(params.paths.work, "metrics.json"))["test_accuracy"]
        registered = registry.register(params, model_uri, run_id, test_accuracy,
                                       registry.split_fingerprint(work_dir(params, "split", "test.csv")))
    tracking.record_run(params, {**tracking.recorded_run(params), "model_uri": model_uri, "registered": registered})
    return {"model_uri": model_uri, "run_id": run_id, "registered": registered,
            **{k: str(v) for k, v in paths.items()}}
