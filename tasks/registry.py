"""Hand-off through the MLflow Model Registry: each final model becomes a version of
``tracking.registered_model``; the alias ``champion`` moves to it only when it beats the current
champion's test accuracy on the same test split, otherwise it gets ``challenger``.

Why "the same test split": accuracies on different test images do not compare, so a model evaluated
on another split (new data, another seed or fraction) never takes the champion's place by itself; a
person decides (``MlflowClient().set_registered_model_alias``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from automl.data.labels import read_labels_csv
from automl.errors import AutoMLError
from tasks import tracking
from tasks.settings import PipelineParams

CHAMPION, CHALLENGER = "champion", "challenger"
ACCURACY_TAG, SPLIT_TAG = "automl.test_accuracy", "automl.test_split_sha256"


def split_fingerprint(test_csv: str | Path) -> str:
    """The test split's identity: a hash of its file names and labels (not of the user's line numbers,
    which an edit above a row changes)."""
    names, labels = read_labels_csv(test_csv)
    return hashlib.sha256("".join(f"{n}\t{y}\n" for n, y in zip(names, labels)).encode()).hexdigest()


def register(params: PipelineParams, model_uri: str, run_id: str, test_accuracy: float, split: str) -> dict[str, Any]:
    """Register ``model_uri`` as a new version and give it its alias; returns name, version, alias
    and why."""
    import mlflow

    name = params.tracking.registered_model
    mlflow.set_tracking_uri(tracking.tracking_uri(params))
    version = mlflow.register_model(model_uri, name, tags={ACCURACY_TAG: repr(test_accuracy), SPLIT_TAG: split})
    client = tracking.client_for(params)
    alias, reason = _alias(client, name, test_accuracy, split)
    client.set_registered_model_alias(name, alias, version.version)
    client.set_tag(run_id, "automl.registered", f"models:/{name}/{version.version} ({alias})")
    return {"name": name, "version": int(version.version), "alias": alias, "reason": reason,
            "uri": f"models:/{name}@{alias}"}


def _alias(client: Any, name: str, test_accuracy: float, split: str) -> tuple[str, str]:
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return CHAMPION, "no champion yet"
    if champion.tags.get(SPLIT_TAG) != split:
        return CHALLENGER, f"the champion (version {champion.version}) was tested on another split"
    best = float(champion.tags[ACCURACY_TAG])
    if test_accuracy > best:
        return CHAMPION, f"test accuracy {test_accuracy:.4f} beats the champion's {best:.4f}"
    return CHALLENGER, f"test accuracy {test_accuracy:.4f} does not beat the champion's {best:.4f}"


def model_folder(ref: str, params: PipelineParams) -> Path:
    """A local folder holding the model ``ref`` names: the folder itself, or a ``models:/`` or
    ``runs:/`` URI downloaded from the tracking server of ``params``."""
    if "://" not in ref and ":/" not in ref:
        return Path(ref)
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri(params))
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=ref))
    except MlflowException as exc:
        raise AutoMLError(f"{ref}: cannot load it from {tracking.tracking_uri(params)} ({exc.message}).") from None
