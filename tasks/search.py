"""The search step: the session's search, with each candidate trained by a Prefect task.

``run_search_step`` takes the way to train a batch: Prefect mapped tasks in the flow, or in-process
calls of the same task body (``train_candidate_task.fn``) under DVC and in tests.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from automl.fileio import read_json, write_json
from automl.report.progress import ConsoleProgress, budget_bar
from automl.search.loop import BatchTrainer
from automl.search.records import Candidate, CandidateRecord
from automl.search.store import CLASSES_FILE, CandidateStore
from automl.session import SearchSession, train_and_record
from automl.training.trainer import TensorData, set_threads
from tasks import tracking
from tasks.data import load_preprocessor, load_tensors, work_dir
from tasks.settings import PipelineParams
from tasks.warm import warm_roots

SEARCH_RUN_FILE = "search_run.json"  # the search's MLflow run: a clock file, named in .dvcignore


@functools.lru_cache(maxsize=2)
def _cached_tensors(work: str, mtime: float) -> TensorData:
    """Each worker decodes the preprocessed tensors once per run, not once per candidate."""
    return load_tensors(work)


@task(name="train-candidate", task_run_name="candidate-{candidate[id]}", cache_policy=NO_CACHE)
def train_candidate_task(candidate: dict[str, Any], params: PipelineParams, deadline: float, parent_run_id: str,
                         quiet: bool = False, best: float | None = None) -> CandidateRecord:
    """Train one candidate (plain data in, record out) with the store and data on this machine's disk;
    ``best``: the search's best validation accuracy so far, for progress lines."""
    return train_with_tracking(Candidate.from_dict(candidate), params, deadline, parent_run_id, quiet, best,
                               session_of(params).store, tensors(params))


def train_with_tracking(candidate: Candidate, params: PipelineParams, deadline: float, parent_run_id: str,
                        quiet: bool, best: float | None, store: CandidateStore, data: TensorData) -> CandidateRecord:
    """Train from the parent's weights in ``store``, in an MLflow nested run; the record names that run.
    Sets this worker's torch threads (``train.threads``): a no-op after its first candidate."""
    set_threads(params.train.threads)
    progress = ConsoleProgress(deadline)
    progress.best = best
    logger = tracking.MlflowCandidateLogger(params, parent_run_id)
    record = train_and_record(candidate, store, data, params.train, seed=params.seed, deadline=deadline,
                              callbacks=[logger] + ([] if quiet else [progress]))
    return record.replace(tracking_run_id=logger.runs[candidate.id])


def in_process_trainer(params: PipelineParams, parent_run_id: str, quiet: bool = False) -> BatchTrainer:
    store = session_of(params).store

    def train_batch(candidates: list[Candidate], deadline: float) -> list[CandidateRecord]:
        return [train_candidate_task.fn(c.to_dict(), params, deadline, parent_run_id, quiet, best_accuracy(store))
                for c in candidates]
    return train_batch


def roots_here(local: BatchTrainer, other: BatchTrainer) -> BatchTrainer:
    """Warm-start roots to ``local`` (their weights are in this machine's store; scoring them is a
    forward pass), every other candidate to ``other``; records in the order asked."""

    def train_batch(candidates: list[Candidate], deadline: float) -> list[CandidateRecord]:
        roots = [c for c in candidates if c.origin is not None]
        rest = [c for c in candidates if c.origin is None]
        done = {r.id: r for r in (local(roots, deadline) if roots else []) + (other(rest, deadline) if rest else [])}
        return [done[c.id] for c in candidates]
    return train_batch


def best_accuracy(store: CandidateStore) -> float | None:
    best = store.best()
    return best.val_accuracy if best else None


def session_of(params: PipelineParams) -> SearchSession:
    """The pipeline's search session: its store is ``<paths.work>/search``."""
    return SearchSession(work_dir(params, "search"), params)


def tensors(params: PipelineParams) -> TensorData:
    work = params.paths.work
    return _cached_tensors(work, Path(work, "preprocessed", "train.npy").stat().st_mtime)


def run_search_step(params: PipelineParams, parent_run_id: str | None = None,
                    make_trainer: Callable[[PipelineParams, str], BatchTrainer] = in_process_trainer,
                    resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Search architectures within ``search.time_limit``; write the store and ``best.json``.
    ``resume``: continue the search saved under ``paths.work`` (see ``automl.search.loop.start_search``);
    ``quiet``: no budget bar."""
    session = session_of(params)
    roots = warm_roots(params.search.warm_start, params.search.warm_start_top, tracking.tracking_uri(params),
                       params.tracking.registered_model)
    start = session.start(tensors(params), load_preprocessor(params).classes, resume, roots)
    if start.resumed and (parent_run_id := parent_run_id or tracking.recorded_run(params).get("parent_run_id")):
        tracking.reopen_parent_run(params, parent_run_id, session.store)
    parent_run_id = parent_run_id or tracking.start_parent_run(params)
    root = session.store.root
    tracking.client_for(params).log_artifact(parent_run_id, str(root / CLASSES_FILE))  # what a warm start compares
    trainer = make_trainer(session.params, parent_run_id)  # the protocol sized from the data
    if make_trainer is not in_process_trainer:
        trainer = roots_here(in_process_trainer(session.params, parent_run_id, quiet), trainer)
    with budget_bar(params.search.time_limit, start.spent, bars=not quiet):
        summary = session.run(start, trainer)
    best = session.best(summary)
    result = {"best_id": best.id, "best_val_accuracy": best.val_accuracy,
              "n_candidates": summary.n_candidates, "n_failed": summary.n_failed}
    write_json(root / "best.json", result)  # no seconds: a re-run that finds the same search writes the same file
    write_json(root / SEARCH_RUN_FILE, {"parent_run_id": parent_run_id})
    result["search_seconds"] = session.store.spent()
    tracking.log_metrics(params, parent_run_id, tracking.search_metrics(result))
    return {**result, "timing": summary.timing, "parent_run_id": parent_run_id}


def search_summary(params: PipelineParams) -> dict[str, Any]:
    """The saved search's ``best.json``, the seconds it spent and its MLflow run (0 and none where DVC
    checked the store out without its clock files)."""
    store = session_of(params).store
    run = store.root / SEARCH_RUN_FILE
    return {**read_json(store.root / "best.json"), "search_seconds": store.spent(),
            "parent_run_id": read_json(run)["parent_run_id"] if run.is_file() else None}


def parent_run_of(params: PipelineParams, stage: str) -> str:
    """The parent run ``stage``, a step after the search, logs into (see ``tracking.open_parent_run``)."""
    evaluated = Path(params.paths.work, "metrics.json")
    return tracking.open_parent_run(params, stage, search_summary(params),
                                    read_json(evaluated) if evaluated.is_file() else None)
