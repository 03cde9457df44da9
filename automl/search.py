"""The one search loop, the on-disk record of candidates, and the callbacks that observe them.

``run_search`` asks the searcher for a batch, hands it to ``train_batch`` (in-process for the Python
API, Prefect mapped tasks in the flow), tells the results back and saves the searcher's state after
each round. ``train_and_record`` is what trains one candidate in either case: it inherits the parent's
weights from the store, trains, and writes the record, so every driver keeps the same files.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from automl.config import TrainConfig
from automl.fileio import atomic_path, read_json, write_json, write_text
from automl.graph import Graph
from automl.inherit import inherit_weights
from automl.morph import apply_morph
from automl.searcher import Candidate, Searcher
from automl.timing import Stopwatch
from automl.trainer import EpochInfo, TensorData, train_candidate


class SearchCallback(Protocol):
    """Observers at the edge (console progress, MLflow); the searcher itself never logs."""

    def on_candidate_start(self, candidate: Candidate) -> None: ...

    def on_epoch(self, candidate: Candidate, info: EpochInfo) -> None: ...

    def on_candidate_end(self, candidate: Candidate, record: dict[str, Any], weights_path: Path | None) -> None: ...


def rank(record: dict[str, Any]) -> tuple[float, float, int]:
    """Best first: validation accuracy, then lower validation loss (a validation set of a few hundred
    images ties often on accuracy), then the earlier candidate."""
    loss = record.get("val_loss")
    return record["val_accuracy"], -(loss if loss is not None else math.inf), -record["id"]


class CandidateStore:
    """``root/candidates/<id>/{graph.json, record.json, weights.pt}``, a readable ``search.log`` and
    ``searcher.json``. Weights load with ``weights_only=True``: no pickle is executed."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "candidates").mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        """Forget a previous search in this folder (only the files the store itself writes)."""
        shutil.rmtree(self.root / "candidates", ignore_errors=True)
        for name in ("search.log", "searcher.json"):
            (self.root / name).unlink(missing_ok=True)
        (self.root / "candidates").mkdir(parents=True)

    def dir(self, candidate_id: int) -> Path:
        return self.root / "candidates" / f"{candidate_id:04d}"

    def weights_path(self, candidate_id: int) -> Path:
        return self.dir(candidate_id) / "weights.pt"

    def start(self, candidate: Candidate) -> None:
        folder = self.dir(candidate.id)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "graph.json", candidate.graph.to_json())
        write_json(folder / "record.json", self._record(candidate, {"status": "running"}))

    def finish(self, candidate: Candidate, summary: dict[str, Any], state: dict[str, torch.Tensor] | None) -> dict:
        if state is not None:
            save_weights(state, self.weights_path(candidate.id))
        record = self._record(candidate, summary)
        write_json(self.dir(candidate.id) / "record.json", record)
        self.log(_log_line(record))
        return record

    def _record(self, candidate: Candidate, summary: dict[str, Any]) -> dict[str, Any]:
        return {"id": candidate.id, "parent_id": candidate.parent_id, "operation": candidate.operation,
                "info": candidate.info, "architecture": candidate.graph.describe(),
                "n_params": candidate.graph.param_count(), **summary}

    def records(self) -> list[dict[str, Any]]:
        paths = sorted((self.root / "candidates").glob("*/record.json"))
        return [read_json(p) for p in paths]

    def best(self) -> dict[str, Any] | None:
        done = [r for r in self.records() if r["status"] == "complete" and r.get("val_accuracy") is not None]
        return max(done, key=rank) if done else None

    def graph(self, candidate_id: int) -> Graph:
        return Graph.from_json((self.dir(candidate_id) / "graph.json").read_text())

    def weights(self, candidate_id: int) -> dict[str, torch.Tensor]:
        return load_weights(self.weights_path(candidate_id))

    def log(self, line: str) -> None:
        with (self.root / "search.log").open("a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def save_searcher(self, searcher: Searcher) -> None:
        write_json(self.root / "searcher.json", searcher.to_state())


def _log_line(r: dict[str, Any]) -> str:
    origin = f"from #{r['parent_id']} by {r['operation']}" if r["parent_id"] else "initial network"
    acc = f"val_accuracy={r['val_accuracy']:.4f}" if r.get("val_accuracy") is not None else ""
    error = f" error={r['error'].splitlines()[0]}" if r.get("error") else ""
    return (f"candidate #{r['id']} {r['status']} {acc} epochs={r.get('epochs', 0)} "
            f"params={r['n_params']} {origin} [{r['architecture']}]{error}")


def inherit_chain(parent: Graph, state: dict[str, torch.Tensor], child: Graph) -> dict[str, torch.Tensor]:
    """Replay the morphs from ``parent`` to ``child`` (recorded in the child's history), carrying the
    weights through each, so the child starts computing what its trained parent computed."""
    graph = parent
    for spec in child.history[len(parent.history):]:
        graph = apply_morph(graph, spec)
        state = inherit_weights(graph, state)
    return state


def save_weights(state: dict[str, torch.Tensor], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


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
    parent_weights = None
    if candidate.parent_id:
        with clock("inherit"):
            parent_weights = inherit_chain(store.graph(candidate.parent_id), store.weights(candidate.parent_id),
                                           candidate.graph)

    def on_epoch(info: EpochInfo) -> None:
        with clock("callbacks"):
            for cb in callbacks:
                cb.on_epoch(candidate, info)

    if candidate.info.get("until_deadline") and deadline is not None:
        config = dataclasses.replace(config, max_epochs=UNTIL_DEADLINE, patience=UNTIL_DEADLINE)
    result = train_candidate(candidate.graph, parent_weights, data, config,
                             seed=seed + candidate.id, deadline=deadline, on_epoch=on_epoch, slot=candidate.id)
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


BatchTrainer = Callable[[list[Candidate], float], list[dict[str, Any]]]


@dataclass(frozen=True)
class SearchSummary:
    best: dict[str, Any] | None
    n_candidates: int
    n_failed: int
    seconds: float
    timing: dict[str, float]  # train_batch: in the trainer; searcher_wait: training waited for proposals;
    # searcher_ask: all proposing, mostly in the background; tell: telling and saving the searcher state


def run_search(searcher: Searcher, train_batch: BatchTrainer, store: CandidateStore, *, time_limit: float,
               max_candidates: int, parallel: int = 1) -> SearchSummary:
    """Ask, train, tell until the time budget, the candidate cap or the strategy runs out.

    As in Auto-Keras, the next round's proposals are worked out in a background thread while the
    current round trains (its candidates count as pending fantasies), so training never waits for the
    GP; the searcher is only touched by one thread at a time (ask runs, then tell after both finish).
    """
    start = time.time()
    deadline = start + time_limit
    store.log(f"search started: strategy={searcher.name} time_limit={time_limit:.0f}s max_candidates={max_candidates}")
    asked, clock = 0, Stopwatch()

    def ask() -> list[Candidate]:
        room = min(parallel, max_candidates - asked)
        with clock("searcher_ask"):
            return searcher.ask(room) if room > 0 and time.time() < deadline else []

    with clock("searcher_wait"):
        candidates = ask()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="searcher") as pool:
        while candidates and time.time() < deadline:
            asked += len(candidates)
            upcoming = pool.submit(ask)
            with clock("train_batch"):
                records = train_batch(candidates, deadline)
            with clock("searcher_wait"):
                proposals = upcoming.result()
            with clock("tell"):
                for candidate, record in zip(candidates, records):
                    searcher.tell(candidate.id, record)
                store.save_searcher(searcher)
            if not proposals:
                with clock("searcher_wait"):
                    proposals = ask()  # empty ahead of time when nothing was trained yet
            candidates = proposals
    records = store.records()
    failed = sum(r["status"] == "failed" for r in records)
    store.log(f"search ended: {len(records)} candidates, {failed} failed, {time.time() - start:.0f}s")
    return SearchSummary(store.best(), len(records), failed, time.time() - start, clock.rounded())
