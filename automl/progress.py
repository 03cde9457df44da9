"""Console progress: a search callback printing stage, candidate, epoch, best accuracy and time left.

It lives at the edge like the MLflow callback; nothing in the search or the trainer prints.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from automl.search import UNTIL_DEADLINE
from automl.searcher import Candidate
from automl.trainer import EpochInfo


class ConsoleProgress:
    """Prints one line per epoch and per finished candidate. Thread-safe: mapped tasks share it."""

    def __init__(self, deadline: float | None, stream: TextIO | None = None) -> None:
        self.deadline = deadline
        self.stream = stream or sys.stdout
        self.best: float | None = None
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def _left(self) -> str:
        return f"{max(0.0, self.deadline - time.time()):.0f}s left" if self.deadline else ""

    def on_candidate_start(self, candidate: Candidate) -> None:
        origin = f"from #{candidate.parent_id} by {candidate.operation}" if candidate.parent_id else "initial network"
        self._print(f"[search] candidate #{candidate.id} ({origin}): {candidate.graph.describe()}  {self._left()}")

    def _update_best(self, acc: float | None) -> None:
        if acc is not None:
            with self._lock:
                self.best = acc if self.best is None else max(self.best, acc)

    def on_epoch(self, candidate: Candidate, info: EpochInfo) -> None:
        self._update_best(info.val_accuracy)  # a candidate keeps its best epoch's weights
        acc = f"val_acc {info.val_accuracy:.4f}" if info.val_accuracy is not None else ""
        best = f"best {self.best:.4f}" if self.best is not None else ""
        of = f"/{info.max_epochs}" if info.max_epochs < UNTIL_DEADLINE else " (until the deadline)"
        self._print(f"[search] candidate #{candidate.id} epoch {info.epoch}{of} "
                    f"loss {info.train_loss:.4f} {acc} {best} ({info.seconds:.1f}s)  {self._left()}")

    def on_candidate_end(self, candidate: Candidate, record: dict[str, Any], weights_path: Path | None) -> None:
        acc = record.get("val_accuracy")
        self._update_best(acc)
        detail = f"val_acc {acc:.4f}" if acc is not None else record.get("error", "").splitlines()[0][:200]
        self._print(f"[search] candidate #{candidate.id} {record['status']}: {detail}; best so far "
                    f"{self.best if self.best is not None else float('nan'):.4f}  {self._left()}")

    def final_epoch(self, info: EpochInfo) -> None:
        self._print(f"[final_fit] epoch {info.epoch}/{info.max_epochs} loss {info.train_loss:.4f} ({info.seconds:.1f}s)")
