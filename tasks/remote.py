"""Candidates trained by workers that may not share the driver's disk (process and Dask runners).

Nothing travels by path: the driver publishes the preprocessed training data to the pipeline's
MLflow parent run once, tagged with its content digest; a worker fetches it once per machine and
content (a later run on the same data downloads nothing), fetches the parent candidate's graph and
weights from that candidate's MLflow run into a temporary store, trains, and its MLflow logger uploads
the new weights. The driver then copies the weights into its own store, so the final fit, resume and
the report read the same files whichever runner trained the candidates.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from automl.fileio import atomic_dir
from automl.search.records import Candidate, CandidateRecord, Status
from automl.search.store import CandidateStore
from automl.training.trainer import TensorData
from tasks import tracking
from tasks.data import load_tensors, work_dir
from tasks.search import train_with_tracking
from tasks.settings import PipelineParams

DATA_ARTIFACTS = "data/preprocessed"
DATA_FILES = ("train.npy", "train_labels.npz", "val.npy", "val_labels.npz", "preprocessor.json")
DIGEST_TAG = "automl.data_sha256"  # on the parent run: the content digest of DATA_FILES
DATA_ROOT = Path(tempfile.gettempdir(), "automl-data")  # a worker machine's downloaded data, by digest
UNUSED_SECONDS = 2 * 86_400  # a worker's downloaded data unused this long is removed by the next download
READ_BLOCK = 16 * 2**20


def publish_data(params: PipelineParams, parent_run_id: str) -> None:
    """Upload the data candidates train on to the parent run (skipped when a resumed run has it) and
    tag the run with its digest."""
    client = tracking.client_for(params)
    present = {Path(f.path).name for f in client.list_artifacts(parent_run_id, DATA_ARTIFACTS)}
    files = [work_dir(params, "preprocessed", name) for name in DATA_FILES]
    for path in files:
        if path.name not in present:
            client.log_artifact(parent_run_id, str(path), DATA_ARTIFACTS)
    client.set_tag(parent_run_id, DIGEST_TAG, files_digest(files))


def files_digest(paths: list[Path]) -> str:
    """sha256 of the files' names and contents, read a block at a time."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\0".encode())
        with open(path, "rb") as handle:
            while block := handle.read(READ_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def fetched_tensors(tracking_uri: str, parent_run_id: str) -> TensorData:
    """The parent run's training data, read from ``DATA_ROOT/<digest>``, where it is downloaded once per
    machine and content; marked used on each call so that no other worker's cleanup removes it while
    candidates train from it."""
    folder = data_folder(tracking_uri, parent_run_id, DATA_ROOT)
    os.utime(folder)
    return _loaded(folder)


@functools.lru_cache(maxsize=8)
def data_folder(tracking_uri: str, parent_run_id: str, root: Path) -> Path:
    """``root/<digest>`` with the parent run's data, downloaded when absent; a download first removes
    the folders no worker has used for ``UNUSED_SECONDS``."""
    client = MlflowClient(tracking_uri=tracking_uri)
    digest = client.get_run(parent_run_id).data.tags.get(DIGEST_TAG, parent_run_id)
    folder = root / digest
    if not folder.is_dir():  # complete when it has its name
        remove_unused(root, time.time() - UNUSED_SECONDS)
        atomic_dir(folder, lambda work: client.download_artifacts(parent_run_id, DATA_ARTIFACTS, str(work)))
    return folder


def remove_unused(root: Path, before: float) -> None:
    """Remove the data folders under ``root`` last used before ``before`` (a ``time.time()``)."""
    for old in root.glob("*") if root.is_dir() else []:
        if old.is_dir() and old.stat().st_mtime < before:
            shutil.rmtree(old, ignore_errors=True)


@functools.lru_cache(maxsize=2)
def _loaded(folder: Path) -> TensorData:
    return load_tensors(folder)  # MLflow downloads the artifact folder by its last name: preprocessed/


def candidate_run(client: MlflowClient, parent_run_id: str, candidate_id: int) -> str:
    """The finished MLflow run of a candidate of this pipeline run (a resumed run may also hold a
    killed one for the same candidate)."""
    experiment = client.get_run(parent_run_id).info.experiment_id
    query = (f"tags.`{tracking.PARENT_TAG}` = '{parent_run_id}' and tags.`automl.candidate_id` = '{candidate_id}' "
             "and attributes.status = 'FINISHED'")
    found = client.search_runs([experiment], query, max_results=1)
    if not found:
        raise FileNotFoundError(f"no finished MLflow run of candidate #{candidate_id} under run {parent_run_id}")
    return found[0].info.run_id


def fetch_candidate(client: MlflowClient, run_id: str, candidate_id: int, store: CandidateStore) -> None:
    """A trained candidate's graph and weights from its MLflow run into ``store``."""
    folder = store.dir(candidate_id)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("graph.json", "weights.pt"):
        client.download_artifacts(run_id, name, str(folder))


@task(name="train-candidate", task_run_name="candidate-{candidate[id]}", cache_policy=NO_CACHE)
def train_candidate_remote(candidate: dict[str, Any], params: PipelineParams, deadline: float, parent_run_id: str,
                           quiet: bool = False, best: float | None = None) -> CandidateRecord:
    """Train one candidate with nothing from the driver's disk (see the module docstring)."""
    cand = Candidate.from_dict(candidate)
    client = tracking.client_for(params)
    data = fetched_tensors(tracking.tracking_uri(params), parent_run_id)
    with tempfile.TemporaryDirectory(prefix="automl-candidate-") as scratch:
        store = CandidateStore(scratch)
        if cand.parent_id:
            fetch_candidate(client, candidate_run(client, parent_run_id, cand.parent_id), cand.parent_id, store)
        return train_with_tracking(cand, params, deadline, parent_run_id, quiet, best, store, data)


def adopt(params: PipelineParams, candidate: Candidate, record: CandidateRecord,
          store: CandidateStore) -> CandidateRecord:
    """Write a worker's record into the driver's store, with the weights from its MLflow run. The
    record goes last: a crash before it leaves a running candidate, which a resume trains again."""
    store.start(candidate)
    if record.status is Status.COMPLETE:
        tracking.client_for(params).download_artifacts(record.tracking_run_id, "weights.pt",
                                                       str(store.dir(candidate.id)))
    return store.finish(record, None)
