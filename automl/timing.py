"""Where the time goes: named wall-clock totals, so a run can report its orchestration overhead
(searcher, weight transfer, tracking callbacks, file writes) next to its training time."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Accumulates seconds per name; one instance per candidate or per search, never global."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.totals.items()}
