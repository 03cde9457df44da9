"""The one search loop, how one candidate is trained and recorded, and the callbacks that observe it.

``run_search`` asks the searcher for a batch, hands it to ``train_batch`` (in-process for the Python
API, Prefect mapped tasks in the flow), tells the results back and saves the searcher's state after
every ask and tell, so a killed search resumes where it was (``start_search``). ``train_and_record``
trains one candidate in either case: it inherits the parent's weights from the store, trains, and
writes the record, so every driver keeps the same files. A candidate that fails is a failed record;
only errors that would fail every candidate (``errors.stops_the_run``) stop the search.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from automl.config import Params, TrainConfig
from automl.errors import SearchError, stops_the_run
from automl.fileio import write_json
from automl.arch.graph import Graph
from automl.arch.inherit import inherit_weights
from automl.arch.morph import apply_morph
from automl.search.searcher import Candidate, Searcher
from automl.search.store import CandidateStore
from automl.timing import Stopwatch
from automl.training.trainer import EpochInfo, TensorData, failed_result, train_candidate


class SearchCallback(Protocol):
    """Observers at the edge (console progress, MLflow); the searcher itself never logs."""

    def on_candidate_start(self, candidate: Candidate) -> None: ...

    def on_epoch(self, candidate: Candidate, info: EpochInfo) -> None: ...

    def on_candidate_end(self, candidate: Candidate, record: dict[str, Any], weights_path: Path | None) -> None: ...


def inherit_chain(parent: Graph, state: dict[str, torch.Tensor], child: Graph) -> dict[str, torch.Tensor]:
    """Replay the morphs from ``parent`` to ``child`` (recorded in the child's history), carrying the
    weights through each, so the child starts computing what its trained parent computed."""
    graph = parent
    for spec in child.history[len(parent.history):]:
        graph = apply_morph(graph, spec)
        state = inherit_weights(graph, state)
    return state


UNTIL_DEADLINE = 10**6  # epochs: only the deadline stops such a candidate


def train_and_record(candidate: Candidate, store: CandidateStore, data: TensorData, config: TrainConfig, *,
                     seed: int, deadline: float | None, callbacks: Sequence[SearchCallback] = ()) -> dict[str, Any]:
    """Train one candidate from its parent's weights and write its record; returns the record.

    The record's ``timing`` splits the call's wall time: ``epochs`` (training and validation),
    ``inherit`` (parent weights through the morphs), ``callbacks`` (tracking, progress), ``store``
    (graph, weights and record files), so a benchmark can tell training from overhead."""
    clock, start = Stopwatch(), time.perf_counter()
    with clock("store"):
        store.start(candidate)
    with clock("callbacks"):
        for cb in callbacks:
            cb.on_candidate_start(candidate)

    def on_epoch(info: EpochInfo) -> None:
        with clock("callbacks"):
            for cb in callbacks:
                cb.on_epoch(candidate, info)

    if candidate.info.get("until_deadline") and deadline is not None:
        config = dataclasses.replace(config, max_epochs=UNTIL_DEADLINE, patience=UNTIL_DEADLINE)
    try:
        with clock("inherit"):
            parent_weights = _parent_weights(candidate, store)
        result = train_candidate(candidate.graph, parent_weights, data, config,
                                 seed=seed + candidate.id, deadline=deadline, on_epoch=on_epoch, slot=candidate.id)
    except Exception as exc:  # a bug in a morph or in inheriting: this candidate fails, not the search
        if stops_the_run(exc):
            raise
        result = failed_result(exc)
    clock.totals["epochs"] = sum(h["seconds"] for h in result.history)
    with clock("store"):
        record = store.finish(candidate, result.summary(), result.state)
    weights = store.weights_path(candidate.id) if result.state is not None else None
    with clock("callbacks"):
        for cb in callbacks:
            cb.on_candidate_end(candidate, record, weights)
    record["timing"] = dict(clock.rounded(), wall=round(time.perf_counter() - start, 4))
    write_json(store.dir(candidate.id) / "record.json", record)
    return record


def _parent_weights(candidate: Candidate, store: CandidateStore) -> dict[str, torch.Tensor] | None:
    if not candidate.parent_id:
        return None
    return inherit_chain(store.graph(candidate.parent_id), store.weights(candidate.parent_id), candidate.graph)


# Params a resumed search may change: the budget, where training runs, and what happens after the search.
RESUMABLE = ("search.time_limit", "search.max_candidates", "search.max_consecutive_failures", "final_fit.",
             "paths.export", "paths.reports", "train.device", "train.threads", "runner.")


def search_identity(params: Params, data: TensorData) -> dict[str, Any]:
    """What a search depends on: params other than ``RESUMABLE`` and a hash of its tensors."""
    digest = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_val, data.y_val):
        if t is not None:
            digest.update(t.contiguous().numpy().tobytes())
    flat = {k: v for k, v in params.flat().items() if not k.startswith(RESUMABLE)}
    return {**flat, "data_sha256": digest.hexdigest()}


@dataclass(frozen=True)
class SearchStart:
    """A new searcher, or one restored from the store with what it must train first."""

    searcher: Searcher
    first: list[Candidate]
    spent: float  # seconds of the budget already used by the interrupted run(s)
    resumed: bool


def start_search(store: CandidateStore, identity: dict[str, Any], resume: bool,
                 new_searcher: Callable[[], Searcher]) -> SearchStart:
    """Resume the search in ``store`` when asked and possible, else start a new one there."""
    if not store.open(identity, resume):
        return SearchStart(new_searcher(), [], 0.0, False)
    searcher = store.load_searcher()
    first = store.reconcile(searcher)
    store.save_searcher(searcher)
    spent = store.spent()
    kept = sum(r["status"] != "running" for r in store.records())
    store.log(f"search resumed: {kept} candidates kept, {len(first)} to train again, {spent:.0f}s already spent")
    return SearchStart(searcher, first, spent, True)


BatchTrainer = Callable[[list[Candidate], float], list[dict[str, Any]]]


@dataclass(frozen=True)
class SearchSummary:
    best: dict[str, Any] | None
    n_candidates: int
    n_failed: int
    seconds: float  # this run's, not counting the time of a run it resumed
    timing: dict[str, float]  # train_batch: in the trainer; searcher_wait: training waited for proposals;
    # searcher_ask: all proposing, mostly in the background; tell: telling and saving the searcher state
    stopped: str = ""  # why the search ended


@contextmanager
def budget_heartbeat(store: CandidateStore, spent: float, every: float = 2.0) -> Iterator[Callable[[], None]]:
    """Save the seconds spent every ``every`` seconds and whenever the yielded function is called (at
    each round), so the time of a killed run still counts when it is resumed."""
    start, done, lock = time.time(), threading.Event(), threading.Lock()

    def save() -> None:
        with lock:  # one writer at a time: a later value is never replaced by an earlier one
            store.save_spent(spent + time.time() - start)

    def beat() -> None:
        while not done.wait(every):
            save()

    thread = threading.Thread(target=beat, name="budget", daemon=True)
    thread.start()
    try:
        yield save
    finally:
        done.set()
        thread.join()
        save()


def run_search(start: SearchStart, train_batch: BatchTrainer, store: CandidateStore, *, time_limit: float,
               max_candidates: int, parallel: int = 1, max_consecutive_failures: int = 0) -> SearchSummary:
    """Ask, train, tell until the time budget, the candidate cap or the strategy runs out, or
    ``max_consecutive_failures`` candidates in a row fail (0: never stop for failures).

    As in Auto-Keras, the next round's proposals are worked out in a background thread while the
    current round trains (its candidates count as pending fantasies), so training never waits for the
    GP; the searcher is only touched by one thread at a time (ask runs, then tell after both finish).
    """
    searcher, began = start.searcher, time.time()
    deadline = began + time_limit - start.spent
    store.log(f"search started: strategy={searcher.name} time_limit={time_limit:.0f}s max_candidates={max_candidates}")
    clock, streak, stopped = Stopwatch(), 0, ""

    def ask() -> list[Candidate]:
        room = min(parallel, max_candidates - (searcher.next_id - 1))
        with clock("searcher_ask"):
            asked = searcher.ask(room) if room > 0 and time.time() < deadline else []
            store.save_searcher(searcher)
            return asked

    heartbeat = budget_heartbeat(store, start.spent)
    with heartbeat as save_spent, ThreadPoolExecutor(1, thread_name_prefix="searcher") as pool:
        with clock("searcher_wait"):
            candidates = start.first or ask()
        while candidates and time.time() < deadline:
            upcoming = pool.submit(ask)
            with clock("train_batch"):
                records = train_batch(candidates, deadline)
            with clock("searcher_wait"):
                proposals = upcoming.result()
            with clock("tell"):
                for candidate, record in zip(candidates, records):
                    searcher.tell(candidate.id, record)
                    streak = 0 if record["status"] == "complete" else streak + 1
                store.save_searcher(searcher)
                save_spent()
            if max_consecutive_failures and streak >= max_consecutive_failures:
                stopped = f"{streak} candidates in a row failed, the last with: {_first_line(records[-1])}"
                break
            if not proposals:
                with clock("searcher_wait"):
                    proposals = ask()  # empty ahead of time when nothing was trained yet
            candidates = proposals
    stopped = stopped or ("time limit" if time.time() >= deadline else "no more candidates")
    records = store.records()
    failed = sum(r["status"] == "failed" for r in records)
    store.log(f"search ended ({stopped}): {len(records)} candidates, {failed} failed, {time.time() - began:.0f}s")
    return SearchSummary(store.best(), len(records), failed, time.time() - began, clock.rounded(), stopped)


def _first_line(record: dict[str, Any]) -> str:
    return (record.get("error") or record.get("status", "")).splitlines()[0]


def require_best(summary: SearchSummary, store: CandidateStore) -> dict[str, Any]:
    """The best record, or a ``SearchError`` saying why there is none and what the first failure was."""
    if summary.best is not None:
        return summary.best
    errors = [r["error"].splitlines()[0] for r in store.records() if r.get("error")]
    first = f" The first error: {errors[0]}." if errors else ""
    raise SearchError(f"no candidate trained successfully ({summary.stopped}).{first} "
                      f"Every candidate is in {store.root / 'search.log'}.")
