"""The search step: the library's search loop, with each candidate trained by a Prefect task.

``run_search_step`` takes the way to train a batch: Prefect mapped tasks in the flow, or in-process
calls of the same task body (``train_candidate_task.fn``) under DVC and in tests.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from automl.config import Params
from automl.fileio import read_json, write_json
from automl.report.progress import ConsoleProgress, budget_bar
from automl.search.loop import BatchTrainer, require_best, run_search, search_identity, start_search, train_and_record
from automl.search.searcher import Candidate
from automl.search.store import CandidateStore
from automl.search.strategies import make_searcher
from automl.training.trainer import TensorData
from tasks import tracking
from tasks.data import load_preprocessor, load_tensors, work_dir

TRACKING_FILE = "tracking.json"


@functools.lru_cache(maxsize=2)
def _cached_tensors(work: str, mtime: float) -> TensorData:
    """Each worker decodes the preprocessed tensors once per run, not once per candidate."""
    return load_tensors(work)


@task(name="train-candidate", cache_policy=NO_CACHE)
def train_candidate_task(candidate: dict[str, Any], params: Params, deadline: float, parent_run_id: str,
                         quiet: bool = False, best: float | None = None) -> dict[str, Any]:
    """Train one candidate (plain data in, record out) with the store and data on this machine's disk;
    ``best``: the search's best validation accuracy so far, for progress lines."""
    return train_with_tracking(Candidate.from_dict(candidate), params, deadline, parent_run_id, quiet, best,
                               CandidateStore(work_dir(params, "search")), tensors(params))


def train_with_tracking(candidate: Candidate, params: Params, deadline: float, parent_run_id: str, quiet: bool,
                        best: float | None, store: CandidateStore, data: TensorData) -> dict[str, Any]:
    """Train from the parent's weights in ``store``, in an MLflow nested run; the record names that run."""
    progress = ConsoleProgress(deadline)
    progress.best = best
    logger = tracking.MlflowCandidateLogger(params, parent_run_id)
    record = train_and_record(candidate, store, data, params.train, seed=params.seed, deadline=deadline,
                              callbacks=[logger] + ([] if quiet else [progress]))
    return {**record, "tracking_run_id": logger.runs[candidate.id]}


def in_process_trainer(params: Params, parent_run_id: str, quiet: bool = False) -> BatchTrainer:
    store = CandidateStore(work_dir(params, "search"))

    def train_batch(candidates: list[Candidate], deadline: float) -> list[dict[str, Any]]:
        return [train_candidate_task.fn(c.to_dict(), params, deadline, parent_run_id, quiet, best_accuracy(store))
                for c in candidates]
    return train_batch


def best_accuracy(store: CandidateStore) -> float | None:
    best = store.best()
    return best["val_accuracy"] if best else None


def tensors(params: Params) -> TensorData:
    work = params.paths.work
    return _cached_tensors(work, Path(work, "preprocessed", "train.npz").stat().st_mtime)


def run_search_step(params: Params, parent_run_id: str | None = None,
                    make_trainer: Callable[[Params, str], BatchTrainer] = in_process_trainer,
                    resume: bool = False) -> dict[str, Any]:
    """Search architectures within ``search.time_limit``; write the store and ``best.json``.
    ``resume``: continue the search saved under ``paths.work`` (see ``automl.search.loop.start_search``)."""
    root = work_dir(params, "search")
    pre = load_preprocessor(params)
    shape = (pre.channels, pre.image_size, pre.image_size)
    store = CandidateStore(root)
    start = start_search(store, search_identity(params, tensors(params)), resume, lambda: make_searcher(
        params.search.strategy, shape, len(pre.classes), params.seed, params.search, params.train.batch_size))
    if start.resumed and (parent_run_id := parent_run_id or previous_parent_run(params)):
        tracking.reopen_parent_run(params, parent_run_id, store)
    parent_run_id = parent_run_id or tracking.start_parent_run(params)
    write_json(root / TRACKING_FILE, {"parent_run_id": parent_run_id, "tracking_uri": tracking.tracking_uri(params)})
    search = params.search
    with budget_bar(search.time_limit, start.spent):
        summary = run_search(start, make_trainer(params, parent_run_id), store, time_limit=search.time_limit,
                             max_candidates=search.max_candidates, parallel=search.parallel,
                             max_consecutive_failures=search.max_consecutive_failures)
    best = require_best(summary, store)
    result = {"best_id": best["id"], "best_val_accuracy": best["val_accuracy"],
              "n_candidates": summary.n_candidates, "n_failed": summary.n_failed,
              "search_seconds": store.spent()}
    tracking.log_metrics(params, parent_run_id, {k: v for k, v in result.items() if k != "best_id"})
    result.update(timing=summary.timing, parent_run_id=parent_run_id)
    write_json(root / "best.json", result)
    return result


def parent_run_of(params: Params) -> str:
    """The parent run the search step recorded (later DVC stages log into it)."""
    return read_json(work_dir(params, "search", TRACKING_FILE))["parent_run_id"]


def previous_parent_run(params: Params) -> str | None:
    """The parent run of the search saved under ``paths.work``, if any: a resumed run logs into it."""
    return parent_run_of(params) if work_dir(params, "search", TRACKING_FILE).is_file() else None
