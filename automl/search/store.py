"""The on-disk record of a search, written so that a run killed at any instant can be resumed.

``root/candidates/<id>/{graph.json, record.json, clock.json, weights.pt}``, a readable ``search.log``, the
searcher's state (``searcher.json``, saved after every ask and every tell), the search seconds spent
so far (``budget.json``), what the search was started with (``identity.json``: params and a hash
of the data, so a resume with other data or settings is refused rather than mixed in) and the training
protocol its candidates got (``protocol.json``), the class labels its networks output (``classes.json``:
what a later search warm-started from this one compares) and a warm start's root weights (``roots/``).
Every file is written atomically; weights load with ``weights_only=True`` (no pickle is executed).
The clock's files (``CLOCK_FILES``: each record's seconds, the log, the seconds spent) are kept apart from
what the data, params and seed decide: the project's ``.dvcignore`` leaves them out of DVC's hash, so a
search bounded by its candidate count and re-run gives the same output hash; without them (a store DVC
checked out) a record reads with no times.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from automl.arch.graph import Graph
from automl.errors import ConfigError, CorruptFileError
from automl.fileio import read_json, serialized, write_bytes, write_json, write_text
from automl.search.records import Candidate, CandidateRecord, Status, best_of, ranked
from automl.search.searcher import Searcher

SEARCHER_FILE, BUDGET_FILE, IDENTITY_FILE, LOG_FILE = "searcher.json", "budget.json", "identity.json", "search.log"
PROTOCOL_FILE, RECORD_FILE, CLOCK_FILE = "protocol.json", "record.json", "clock.json"
CLASSES_FILE, ROOTS_DIR = "classes.json", "roots"
CLOCK_FILES = (LOG_FILE, BUDGET_FILE, f"candidates/*/{CLOCK_FILE}")  # as .dvcignore names them


class CandidateStore:
    """The files of one search folder (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "candidates").mkdir(parents=True, exist_ok=True)

    # --- starting or resuming --------------------------------------------------------------
    def open(self, identity: dict[str, Any], resume: bool) -> bool:
        """Start a search in this folder; returns whether it resumes the one already there.

        Resuming needs a saved searcher and the same identity (params other than the budget, and
        the same data); otherwise a new search replaces the old files."""
        if resume and (self.root / SEARCHER_FILE).is_file():
            saved = read_json(self.root / IDENTITY_FILE) if (self.root / IDENTITY_FILE).is_file() else {}
            changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
            if changed:
                raise ConfigError(f"{self.root}: cannot resume, the search there ran with other settings or data "
                                  f"({', '.join(changed)} differ). Run without resume to start a new search.")
            for partial in self.root.rglob(".*.tmp"):  # a write the kill cut short (see fileio.atomic_path)
                partial.unlink(missing_ok=True)
            return True
        self.reset()
        write_json(self.root / IDENTITY_FILE, identity)
        if resume:
            self.log("nothing to resume here: starting a new search")
        return False

    def reset(self) -> None:
        """Forget a previous search in this folder (only the files the store itself writes)."""
        for folder in ("candidates", ROOTS_DIR):
            shutil.rmtree(self.root / folder, ignore_errors=True)
        for name in (LOG_FILE, SEARCHER_FILE, BUDGET_FILE, IDENTITY_FILE, PROTOCOL_FILE, CLASSES_FILE):
            (self.root / name).unlink(missing_ok=True)
        (self.root / "candidates").mkdir(parents=True)

    def reconcile(self, searcher: Searcher) -> list[Candidate]:
        """After a crash: tell the searcher about pending candidates that finished before it, and
        return those that did not (their partial files removed) to be trained first."""
        again = []
        for candidate in list(searcher.pending.values()):
            record = self.record(candidate.id)
            if record is not None and record.status.finished:
                searcher.tell(candidate.id, record.outcome())
            else:
                shutil.rmtree(self.dir(candidate.id), ignore_errors=True)
                again.append(candidate)
        return again

    # --- candidates ------------------------------------------------------------------------
    def dir(self, candidate_id: int) -> Path:
        return self.root / "candidates" / f"{candidate_id:04d}"

    def weights_path(self, candidate_id: int) -> Path:
        return self.dir(candidate_id) / "weights.pt"

    def start(self, candidate: Candidate) -> CandidateRecord:
        folder = self.dir(candidate.id)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "graph.json", candidate.graph.to_json())
        record = CandidateRecord.of(candidate, Status.RUNNING)
        self.save(record)
        return record

    def finish(self, record: CandidateRecord, state: dict[str, torch.Tensor] | None) -> CandidateRecord:
        """Weights first, then the record: a record that says complete always has its weights."""
        if state is not None:
            save_weights(state, self.weights_path(record.id))
        record = record.replace(finished_at=round(time.time(), 3))
        self.save(record)
        self.log(_log_line(record))
        return record

    def fail(self, candidate: Candidate, error: str) -> CandidateRecord:
        """Record a candidate whose training task itself crashed (its own code records other failures)."""
        return self.finish(CandidateRecord.of(candidate, Status.FAILED, stopped="error", error=error), None)

    def save(self, record: CandidateRecord) -> None:
        """The one writer of ``record.json`` and its ``clock.json`` (the clock first: a record on disk
        never has an older clock than itself)."""
        stable, clock = record.halves()
        write_json(self.dir(record.id) / CLOCK_FILE, clock)
        write_json(self.dir(record.id) / RECORD_FILE, stable)

    def record(self, candidate_id: int) -> CandidateRecord | None:
        path = self.dir(candidate_id) / RECORD_FILE
        return _read_record(path) if path.is_file() else None

    def records(self) -> list[CandidateRecord]:
        return [_read_record(p) for p in sorted((self.root / "candidates").glob(f"*/{RECORD_FILE}"))]

    def best(self) -> CandidateRecord | None:
        return best_of(self.records())

    def ranked(self) -> list[CandidateRecord]:
        return ranked(self.records())

    def graph(self, candidate_id: int) -> Graph:
        return Graph.from_json((self.dir(candidate_id) / "graph.json").read_text())

    def weights(self, candidate_id: int) -> dict[str, torch.Tensor]:
        return load_weights(self.weights_path(candidate_id))

    def save_root(self, root: int, state: dict[str, torch.Tensor]) -> None:
        """A warm start's root weights (``Origin.root``), before the search asks for it."""
        save_weights(state, self.root / ROOTS_DIR / f"{root}.pt")

    def root_weights(self, root: int) -> dict[str, torch.Tensor]:
        return load_weights(self.root / ROOTS_DIR / f"{root}.pt")

    # --- search state ----------------------------------------------------------------------
    def log(self, line: str) -> None:
        with (self.root / LOG_FILE).open("a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def save_searcher(self, searcher: Searcher) -> None:
        write_json(self.root / SEARCHER_FILE, searcher.to_state())

    def searcher_state(self) -> tuple[dict[str, Any], str]:
        """The saved searcher state and the file it came from (``strategies.searcher_from_state``
        restores it: the store knows files, not strategies)."""
        return read_json(self.root / SEARCHER_FILE), str(self.root / SEARCHER_FILE)

    def save_spent(self, seconds: float, time_limit: float | None = None) -> None:
        """The search seconds spent so far, and the time limit they count against (what a final fit
        inside the search's budget gets the rest of)."""
        write_json(self.root / BUDGET_FILE, {"spent_seconds": round(seconds, 3), "time_limit": time_limit})

    def spent(self) -> float:
        path = self.root / BUDGET_FILE
        return float(read_json(path)["spent_seconds"]) if path.is_file() else 0.0

    def time_left(self) -> float | None:
        """The search's time limit less the seconds it spent; None where no limit was saved (a store
        DVC checked out without its clock files)."""
        path = self.root / BUDGET_FILE
        budget = read_json(path) if path.is_file() else {}
        limit = budget.get("time_limit")
        return None if limit is None else float(limit) - float(budget["spent_seconds"])

    def save_protocol(self, train: dict[str, Any]) -> None:
        """The training settings the candidates got (sized from the data): the final fit follows them."""
        write_json(self.root / PROTOCOL_FILE, train)

    def save_classes(self, classes: list[Any]) -> None:
        write_json(self.root / CLASSES_FILE, {"classes": classes})

    def classes(self) -> list[Any] | None:
        path = self.root / CLASSES_FILE
        return read_json(path)["classes"] if path.is_file() else None

    def protocol(self) -> dict[str, Any] | None:
        path = self.root / PROTOCOL_FILE
        return read_json(path) if path.is_file() else None


def _read_record(path: Path) -> CandidateRecord:
    clock = path.with_name(CLOCK_FILE)
    return CandidateRecord.joined(read_json(path), read_json(clock) if clock.is_file() else None, str(path))


def _log_line(r: CandidateRecord) -> str:
    origin = f"from #{r.parent_id} by {r.operation}" if r.parent_id else "initial network"
    acc = f"val_accuracy={r.val_accuracy:.4f}" if r.val_accuracy is not None else ""
    error = f" error={r.first_error_line()}" if r.error else ""
    return (f"candidate #{r.id} {r.status.value} {acc} epochs={r.epochs} "
            f"params={r.n_params} {origin} [{r.architecture}]{error}")


def save_weights(state: dict[str, torch.Tensor], path: str | Path) -> None:
    write_bytes(path, serialized(lambda buffer: torch.save(state, buffer)))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors only: ``weights_only=True`` refuses any pickled object instead of running it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as exc:  # a truncated zip; pickled code stays an UnpicklingError
        raise CorruptFileError(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
