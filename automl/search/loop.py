"""The one search loop, and starting or resuming it.

``run_search`` asks the searcher for a batch, hands it to ``train_batch`` (whatever the driver passes:
in-process calls for the Python API, Prefect mapped tasks in the flow), tells the outcomes back and
saves the searcher's state after every ask and tell, so a killed search resumes where it was
(``start_search``). It never trains, so it is tested with a fake trainer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from automl.search.records import Candidate, CandidateRecord, Status
from automl.search.searcher import Searcher
from automl.search.store import CandidateStore
from automl.search.strategies import searcher_from_state
from automl.timing import Stopwatch


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
    searcher = searcher_from_state(*store.searcher_state())
    first = store.reconcile(searcher)
    store.save_searcher(searcher)
    spent = store.spent()
    kept = sum(r.status.finished for r in store.records())
    store.log(f"search resumed: {kept} candidates kept, {len(first)} to train again, {spent:.0f}s already spent")
    return SearchStart(searcher, first, spent, True)


BatchTrainer = Callable[[list[Candidate], float], list[CandidateRecord]]  # (candidates, deadline) -> records


@dataclass(frozen=True)
class SearchSummary:
    best: CandidateRecord | None
    n_candidates: int
    n_failed: int
    seconds: float  # this run's, not counting the time of a run it resumed
    timing: dict[str, float]  # train_batch: in the trainer; searcher_wait: training waited for proposals;
    # searcher_ask: all proposing, mostly in the background; tell: telling and saving the searcher state
    stopped: str = ""  # why the search ended


@contextmanager
def budget_heartbeat(store: CandidateStore, spent: float, time_limit: float | None = None,
                     every: float = 2.0) -> Iterator[Callable[[], None]]:
    """Save the seconds spent (against ``time_limit``) every ``every`` seconds and whenever the yielded
    function is called (at each round), so the time of a killed run still counts when it is resumed."""
    start, done, lock = time.time(), threading.Event(), threading.Lock()

    def save() -> None:
        with lock:  # one writer at a time: a later value is never replaced by an earlier one
            store.save_spent(spent + time.time() - start, time_limit)

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


SCORINGS = 2  # validation passes a child needs at the least (its inherited weights', its trained ones'):
# with less time left than that, another candidate would only end past the deadline (at 128 px the
# search had run to 213 s of its 120)


def run_search(start: SearchStart, train_batch: BatchTrainer, store: CandidateStore, *, time_limit: float,
               max_candidates: int, parallel: int = 1, max_consecutive_failures: int = 0,
               reserve: Callable[[], float] = lambda: 0.0) -> SearchSummary:
    """Ask, train, tell until the time budget, the candidate cap (0: none) or the strategy runs out, or
    ``max_consecutive_failures`` candidates in a row fail (0: never stop for failures). ``reserve()``:
    seconds to leave at the end of the budget for what follows the search (asked again at each round).

    As in Auto-Keras, the next round's proposals are worked out in a background thread while the
    current round trains (its candidates count as pending fantasies), so training never waits for the
    GP; the searcher is only touched by one thread at a time (ask runs, then tell after both finish).
    """
    searcher, began = start.searcher, time.time()
    budget_end = began + time_limit - start.spent
    deadline = budget_end - reserve()  # moved at each round, in this thread, as the best candidate changes
    store.log(f"search started: strategy={searcher.name} time_limit={time_limit:.0f}s max_candidates={max_candidates}")
    clock, streak, stopped, scoring = Stopwatch(), 0, "", 0.0

    def ask() -> list[Candidate]:
        room = min(parallel, max_candidates - (searcher.next_id - 1)) if max_candidates else parallel
        with clock("searcher_ask"):
            asked = searcher.ask(room) if room > 0 and time.time() < deadline else []
            store.save_searcher(searcher)
            return asked

    heartbeat = budget_heartbeat(store, start.spent, time_limit)
    with heartbeat as save_spent, ThreadPoolExecutor(1, thread_name_prefix="searcher") as pool:
        with clock("searcher_wait"):
            candidates = start.first or ask()
        while candidates and time.time() + SCORINGS * scoring < deadline:
            upcoming = pool.submit(ask)
            with clock("train_batch"):
                records = train_batch(candidates, batch_deadline(candidates, deadline))
            with clock("searcher_wait"):
                proposals = upcoming.result()
            with clock("tell"):
                for candidate, record in zip(candidates, records):
                    searcher.tell(candidate.id, record.outcome())
                    streak = 0 if record.status is Status.COMPLETE else streak + 1
                    scoring = max(scoring, record.timing.get("score", 0.0))
                store.save_searcher(searcher)
                save_spent()
                deadline = budget_end - reserve()
            if max_consecutive_failures and streak >= max_consecutive_failures:
                stopped = f"{streak} candidates in a row failed, the last with: {records[-1].first_error_line()}"
                break
            if not proposals:
                with clock("searcher_wait"):
                    proposals = ask()  # empty ahead of time when nothing was trained yet
            candidates = proposals
    stopped = stopped or ("time limit" if time.time() + SCORINGS * scoring >= deadline else "no more candidates")
    records = store.records()
    failed = sum(r.status is Status.FAILED for r in records)
    kept = f", {budget_end - deadline:.0f}s of the budget kept for the final fit" if budget_end > deadline else ""
    store.log(f"search ended ({stopped}): {len(records)} candidates, {failed} failed, {time.time() - began:.0f}s{kept}")
    return SearchSummary(store.best(), len(records), failed, time.time() - began, clock.rounded(), stopped)


def batch_deadline(candidates: list[Candidate], deadline: float) -> float:
    """When a batch must end: the search's deadline, or earlier for a candidate that trains to its
    ``budget_share`` of the time left (the seed network under ``search.root_share``)."""
    share = min((c.budget_share for c in candidates if c.until_deadline), default=1.0)
    return deadline if share >= 1 else time.time() + share * max(0.0, deadline - time.time())
