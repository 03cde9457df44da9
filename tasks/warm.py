"""``search.warm_start`` as the pipeline takes it: a folder, an MLflow run id (a pipeline run, or one of
its candidates' runs), a registered model URI (``models:/name@alias`` or ``models:/name/version``) or
``champion`` (the registered model's current champion: the nightly default; none yet means a cold
start). MLflow forms are resolved to the pipeline run that trained the model, and its best candidates'
runs give their graphs and weights (``automl.session.warm.Root``).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from automl.arch.graph import Graph
from automl.errors import ConfigError
from automl.fileio import read_json
from automl.search.records import Origin
from automl.search.store import CLASSES_FILE, load_weights
from automl.session.warm import Root, roots_from_folder, store_root
from tasks.tracking import PARENT_TAG

CHAMPION = "champion"


def warm_roots(value: str, top: int, tracking_uri: str, registered_model: str) -> list[Root]:
    """The roots ``value`` names (none when empty); a ``ConfigError`` naming it when it names nothing."""
    if not value:
        return []
    if store_root(value) is not None:
        return roots_from_folder(value, top)
    client = MlflowClient(tracking_uri=tracking_uri)
    if value == CHAMPION and not _has_champion(client, registered_model):
        return []  # the first night: nothing to build on yet
    try:
        run_id = _pipeline_run(client, _run_of(client, value, registered_model))
    except MlflowException as exc:
        raise ConfigError(f"search.warm_start={value}: no such folder, MLflow run or registered model on "
                          f"{tracking_uri} ({exc.message.splitlines()[0]})") from None
    return _download_roots(client, run_id, top)


def _has_champion(client: MlflowClient, registered_model: str) -> bool:
    try:
        client.get_model_version_by_alias(registered_model, CHAMPION)
    except MlflowException:
        return False
    return True


def _run_of(client: MlflowClient, value: str, registered_model: str) -> str:
    """The MLflow run id ``value`` stands for."""
    if value == CHAMPION:
        value = f"models:/{registered_model}@{CHAMPION}"
    if not value.startswith("models:/"):
        return client.get_run(value).info.run_id
    name, _, which = value.removeprefix("models:/").partition("@")
    if which:
        return client.get_model_version_by_alias(name, which).run_id
    name, _, version = name.partition("/")
    return client.get_model_version(name, version).run_id


def _pipeline_run(client: MlflowClient, run_id: str) -> str:
    """The pipeline's parent run of ``run_id`` (itself when it is one)."""
    return client.get_run(run_id).data.tags.get(PARENT_TAG, run_id)


def _download_roots(client: MlflowClient, run_id: str, top: int) -> list[Root]:
    """The ``top`` best finished candidates of pipeline run ``run_id`` (validation accuracy, then loss)."""
    experiment = client.get_run(run_id).info.experiment_id
    runs = client.search_runs([experiment], f"tags.`{PARENT_TAG}` = '{run_id}' and tags.`automl.kind` = 'candidate' "
                              "and attributes.status = 'FINISHED'",
                              order_by=["metrics.best_val_accuracy DESC", "metrics.best_val_loss ASC"],
                              max_results=top)
    if not runs:
        raise ConfigError(f"search.warm_start={run_id}: no candidate of that run finished training")
    with tempfile.TemporaryDirectory(prefix="automl-warm-") as tmp:
        try:
            classes = read_json(client.download_artifacts(run_id, CLASSES_FILE, tmp))["classes"]
        except (MlflowException, OSError):
            raise ConfigError(f"search.warm_start={run_id}: the run does not say its classes ({CLASSES_FILE}; made "
                              "by an older automl): run it again, or start without a warm start") from None
        roots = []
        for i, run in enumerate(runs):
            into = Path(tmp, str(i))
            into.mkdir()
            fetch = functools.partial(client.download_artifacts, run.info.run_id, dst_path=str(into))
            graph, weights = Graph.from_json(Path(fetch("graph.json")).read_text()), load_weights(fetch("weights.pt"))
            roots.append(Root(graph, weights, Origin(run_id, int(run.data.tags["automl.candidate_id"]), i), classes,
                              float(run.data.metrics.get("best_val_accuracy", 0.0))))
        return roots
