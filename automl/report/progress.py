"""Console progress: a search callback printing stage, candidate, epoch, best accuracy and time left.

It lives at the edge like the MLflow callback; nothing in the search or the trainer prints. On a
terminal each training candidate gets a bar of its epochs and the search a bar of its budget (tqdm);
in a log or a pipe every epoch is a line instead. Quiet runs (``automl run --quiet``) pass
``bars=False``: no setting travels through the environment.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from automl.search.records import Candidate, CandidateRecord
from automl.training.trainer import EpochInfo


class ConsoleProgress:
    """Prints one line per epoch and per finished candidate. Thread-safe: mapped tasks share it."""

    def __init__(self, deadline: float | None, stream: TextIO | None = None, bars: bool = True) -> None:
        self.deadline = deadline
        self.stream = stream or sys.stdout
        self.bars = bars
        self.best: float | None = None
        self._lock = threading.Lock()
        self._bars: dict[int, tqdm] = {}

    def _print(self, text: str) -> None:
        with self._lock:
            tqdm.write(text, file=self.stream)  # above any bar, not through it

    def _left(self) -> str:
        return f"{max(0.0, self.deadline - time.time()):.0f}s left" if self.deadline else ""

    def on_candidate_start(self, candidate: Candidate) -> None:
        origin = f"from #{candidate.parent_id} by {candidate.operation}" if candidate.parent_id else \
            f"warm start: #{candidate.origin.candidate} of {candidate.origin.source}" if candidate.origin else \
            "initial network"
        self._print(f"[search] candidate #{candidate.id} ({origin}): {candidate.graph.describe()}  {self._left()}")

    def _update_best(self, acc: float | None) -> None:
        if acc is not None:
            with self._lock:
                self.best = acc if self.best is None else max(self.best, acc)

    def on_epoch(self, candidate: Candidate, info: EpochInfo) -> None:
        self._update_best(info.val_accuracy)  # a candidate keeps its best epoch's weights
        if not (bar := self._bar(candidate.id, info)).disable:
            bar.set_postfix_str(f"loss {info.train_loss:.3f} val_acc {info.val_accuracy or 0:.3f}", refresh=False)
            bar.update(1)
            return
        acc = f"val_acc {info.val_accuracy:.4f}" if info.val_accuracy is not None else ""
        best = f"best {self.best:.4f}" if self.best is not None else ""
        of = f"/{info.max_epochs}" if info.max_epochs is not None else " (until the deadline)"
        self._print(f"[search] candidate #{candidate.id} epoch {info.epoch}{of} "
                    f"loss {info.train_loss:.4f} {acc} {best} ({info.seconds:.1f}s)  {self._left()}")

    def _bar(self, candidate_id: int, info: EpochInfo) -> tqdm:
        with self._lock:
            if candidate_id not in self._bars:
                total = info.max_epochs  # None: until the deadline, a bar without an end
                self._bars[candidate_id] = tqdm(total=total, desc=f"candidate #{candidate_id}", unit="epoch",
                                                file=self.stream, disable=_disable(self.bars), leave=False)
            return self._bars[candidate_id]

    def on_candidate_end(self, candidate: Candidate, record: CandidateRecord, weights_path: Path | None) -> None:
        if bar := self._bars.pop(candidate.id, None):
            bar.close()
        acc = record.val_accuracy
        self._update_best(acc)
        detail = f"val_acc {acc:.4f}" if acc is not None else record.first_error_line()[:200]
        if record.score is not None and record.score != acc:  # ranked by a tail mean (train.score_epochs)
            detail += f" (score {record.score:.4f})"
        self._print(f"[search] candidate #{candidate.id} {record.status.value}: {detail}; best so far "
                    f"{self.best if self.best is not None else float('nan'):.4f}  {self._left()}")

    def final_epoch(self, info: EpochInfo) -> None:
        self._print(f"[final_fit] epoch {info.epoch}/{info.max_epochs} loss {info.train_loss:.4f} "
                    f"({info.seconds:.1f}s)")

    def final_done(self, fit_accuracy: float, searched: float | None, kept_searched: bool) -> None:
        """Whether the final fit's weights were kept, with the accuracies that decided it."""
        if kept_searched:
            self._print(f"[final_fit] accuracy on its training data fell to {fit_accuracy:.4f} from the searched "
                        f"weights' {searched:.4f}: kept the searched weights")
        else:
            self._print(f"[final_fit] accuracy on its training data {fit_accuracy:.4f}"
                        + (f" (searched weights: {searched:.4f})" if searched is not None else ""))


def _disable(bars: bool) -> bool | None:
    """tqdm's ``disable``: None shows a bar on terminals only (not in logs and pipes); True never."""
    return None if bars else True


@contextmanager
def budget_bar(time_limit: float, spent: float = 0.0, stream: TextIO | None = None,
               bars: bool = True) -> Iterator[None]:
    """A bar of the search's time budget, moved by a thread every second (terminals only)."""
    bar = tqdm(total=round(time_limit), initial=min(round(spent), round(time_limit)), desc="search budget",
               file=stream or sys.stdout, disable=_disable(bars),
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total}s")
    start, done = time.time(), threading.Event()

    def tick() -> None:
        while not done.wait(1.0):
            bar.n = min(bar.total, round(spent + time.time() - start))
            bar.refresh()

    thread = threading.Thread(target=tick, name="budget-bar", daemon=True)
    if not bar.disable:
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread.is_alive():
            thread.join()
        bar.close()


def bar(items: Sequence[Any], desc: str, unit: str) -> Iterable[Any]:
    """Items with a progress bar on a terminal (none in logs and pipes): the ``progress`` that the faces
    hand to data loading (a quiet run hands ``automl.data.images.plain``)."""
    return tqdm(items, desc=desc, unit=unit, disable=None, leave=False, mininterval=0.5)
