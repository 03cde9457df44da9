"""Training one candidate of a search and recording it: the step every driver shares.

In-process (the Python API) or in a Prefect task on any worker, a candidate is trained the same way:
its parent's weights are carried through the morphs that made it, it trains, and the store gets its
weights and then its record, so every driver leaves the same files. A warm start's root starts from
the weights the store keeps for it and is only scored, unless its head was re-initialised. A candidate
that fails is a failed record; only errors that would fail every candidate (``errors.stops_the_run``)
stop the search.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from automl.arch.inherit import inherit_chain
from automl.config import TrainConfig
from automl.errors import stops_the_run
from automl.search.records import Candidate, CandidateRecord, Status
from automl.search.store import CandidateStore
from automl.timing import Stopwatch
from automl.training.trainer import EpochInfo, TensorData, failed_result, score_weights, train_candidate


class SearchCallback(Protocol):
    """Observers at the edge (console progress, MLflow): told of each candidate's start, epochs and
    end. The searcher and the trainer never print or log."""

    def on_candidate_start(self, candidate: Candidate) -> None: ...

    def on_epoch(self, candidate: Candidate, info: EpochInfo) -> None: ...

    def on_candidate_end(self, candidate: Candidate, record: CandidateRecord, weights_path: Path | None) -> None: ...


def train_and_record(candidate: Candidate, store: CandidateStore, data: TensorData, config: TrainConfig, *,
                     seed: int, deadline: float | None,
                     callbacks: Sequence[SearchCallback] = ()) -> CandidateRecord:
    """Train one candidate from its parent's weights and write its record; returns the record.

    The record's ``timing`` splits the call's wall time: ``epochs`` (training and validation),
    ``inherit`` (parent weights through the morphs), ``callbacks`` (tracking, progress), ``store``
    (graph, weights and record files), so a benchmark can tell training from overhead."""
    clock, start = Stopwatch(), time.perf_counter()
    with clock("store"):
        running = store.start(candidate)
    with clock("callbacks"):
        for cb in callbacks:
            cb.on_candidate_start(candidate)

    def on_epoch(info: EpochInfo) -> None:
        with clock("callbacks"):
            for cb in callbacks:
                cb.on_epoch(candidate, info)

    try:
        with clock("inherit"):
            weights = _start_weights(candidate, store)
        if candidate.score_only and weights is not None:
            result = score_weights(candidate.graph, weights, data, config)
        else:
            result = train_candidate(candidate.graph, weights, data, config, seed=seed + candidate.id,
                                     deadline=deadline, until_deadline=candidate.until_deadline,
                                     on_epoch=on_epoch, slot=candidate.id)
    except Exception as exc:  # a bug in a morph or in inheriting: this candidate fails, not the search
        if stops_the_run(exc):
            raise
        result = failed_result(exc)
    clock.totals["epochs"] = sum(h["seconds"] for h in result.history)
    status = Status.FAILED if result.failed else Status.COMPLETE
    with clock("store"):
        record = store.finish(running.replace(status=status, **result.fields()), result.state)
    weights = store.weights_path(candidate.id) if result.state is not None else None
    with clock("callbacks"):
        for cb in callbacks:
            cb.on_candidate_end(candidate, record, weights)
    record = record.replace(timing=dict(clock.rounded(), score=round(result.score_seconds, 4),
                                        wall=round(time.perf_counter() - start, 4)))
    store.save(record)
    return record


def _start_weights(candidate: Candidate, store: CandidateStore) -> dict[str, torch.Tensor] | None:
    """A warm start's root weights, the parent's carried through the morphs, or none (the seed)."""
    if candidate.origin is not None:
        return store.root_weights(candidate.origin.root)
    if not candidate.parent_id:
        return None
    return inherit_chain(store.graph(candidate.parent_id), store.weights(candidate.parent_id), candidate.graph)
