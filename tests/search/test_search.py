"""The search loop with a fake trainer: budget, cap, overlap of proposing and training, failures,
and resuming after a crash."""

import time

import pytest

from automl.config import Params, SearchConfig
from automl.errors import ConfigError
from automl.search.loop import SearchStart, run_search, start_search
from automl.search.records import Outcome, Status
from automl.search.store import CandidateStore
from automl.search.strategies import make_searcher

FAST = SearchConfig(t_min=0.1, neighbours=4)


def fresh(searcher):
    return SearchStart(searcher, [], 0.0, False)


def fake_trainer(store, seconds=0.0, fail_ids=(), score_seconds=0.0):
    """Records like a trainer's: candidate ``id`` scores 0.5 + id / 100, the ``fail_ids`` fail; its
    validation pass took ``score_seconds``."""

    def train_batch(candidates, deadline):
        records = []
        for c in candidates:
            time.sleep(seconds)
            running = store.start(c)
            if c.id in fail_ids:
                done = running.replace(status=Status.FAILED, error="boom", epochs=1)
            else:
                done = running.replace(status=Status.COMPLETE, val_accuracy=0.5 + c.id / 100, epochs=1)
            records.append(store.finish(done, None).replace(timing={"score": score_seconds}))
        return records
    return train_batch


def test_best_breaks_ties_of_accuracy_by_validation_loss(tmp_path):
    store = CandidateStore(tmp_path)
    searcher = make_searcher("random", (1, 12, 12), 3, config=FAST)
    (seed,) = searcher.ask(1)
    searcher.tell(seed.id, Outcome(Status.COMPLETE, 0.95))
    for c, loss in zip([seed, *searcher.ask(3)], [0.5, 0.4, 0.2, 0.3]):
        store.finish(store.start(c).replace(status=Status.COMPLETE, val_accuracy=0.95, val_loss=loss), None)
    assert store.best().val_loss == 0.2


def test_stops_at_the_candidate_cap_and_records_failures(tmp_path):
    store = CandidateStore(tmp_path)
    searcher = make_searcher("random", (1, 12, 12), 3, config=FAST)
    train = fake_trainer(store, fail_ids={3})
    summary = run_search(fresh(searcher), train, store, time_limit=60, max_candidates=7, parallel=2)
    assert summary.n_candidates == 7 and summary.n_failed == 1
    assert summary.best.id == 7 and len(searcher.observations) == 7
    assert "candidate #3 failed" in (tmp_path / "search.log").read_text()
    assert (tmp_path / "searcher.json").exists()


def test_stops_proposing_when_the_budget_is_spent(tmp_path):
    store = CandidateStore(tmp_path)
    train = fake_trainer(store, seconds=0.3)
    summary = run_search(fresh(make_searcher("random", (1, 12, 12), 3, config=FAST)), train, store,
                         time_limit=1.0, max_candidates=100)
    assert summary.stopped == "time limit" and 2 <= summary.n_candidates <= 5


def test_no_candidate_starts_that_could_not_be_scored_by_the_deadline(tmp_path):
    """A child scores its inherited weights and its trained ones: with less time left than two of the
    validation passes seen so far, the search ends instead of running past its budget."""
    store = CandidateStore(tmp_path)
    train = fake_trainer(store, seconds=0.2, score_seconds=30.0)
    summary = run_search(fresh(make_searcher("random", (1, 12, 12), 3, config=FAST)), train, store,
                         time_limit=60, max_candidates=100)
    assert summary.stopped == "time limit" and summary.n_candidates == 1 and summary.seconds < 30


def test_next_proposals_are_computed_while_a_round_trains(tmp_path):
    """Before round k's training returns, the searcher must have been asked k + 1 times (the first
    round in the foreground, then one ask per round in the background). Training waits up to 10 s
    for that: had proposing begun only after training returned, the count would never get there."""
    store = CandidateStore(tmp_path)
    searcher = make_searcher("bayesian", (1, 12, 12), 3, config=FAST)
    asks, original_ask = [], searcher.ask

    def ask(n):
        asks.append(n)
        return original_ask(n)

    searcher.ask = ask
    train = fake_trainer(store)
    overlapped = []

    def train_batch(candidates, deadline):
        records = train(candidates, deadline)
        if candidates[-1].id < 4:  # the last round has nothing left to propose (the cap)
            due, end = len(overlapped) + 2, time.time() + 10
            while len(asks) < due and time.time() < end:
                time.sleep(0.01)
            overlapped.append(len(asks) >= due)
        return records

    run_search(fresh(searcher), train_batch, store, time_limit=120, max_candidates=4)
    assert overlapped == [True, True, True]


def test_a_run_of_failures_ends_the_search_saying_why(tmp_path):
    store = CandidateStore(tmp_path)
    train = fake_trainer(store, fail_ids=set(range(3, 100)))
    summary = run_search(fresh(make_searcher("random", (1, 12, 12), 3, config=FAST)), train, store,
                         time_limit=60, max_candidates=50, max_consecutive_failures=4)
    assert summary.n_candidates == 6 and summary.n_failed == 4 and summary.best.id == 2
    assert summary.stopped == "4 candidates in a row failed, the last with: boom"
    assert "search ended (4 candidates in a row failed" in (tmp_path / "search.log").read_text()


class Killed(BaseException):
    """Stands in for SIGKILL inside one process: nothing after it runs (the subprocess test kills for real)."""


def crashing_trainer(store, crash_at):
    train = fake_trainer(store)

    def train_batch(candidates, deadline):
        if any(c.id == crash_at for c in candidates):
            store.start(next(c for c in candidates if c.id == crash_at))  # left "running" on disk
            raise Killed
        return train(candidates, deadline)
    return train_batch


def test_a_resumed_search_trains_only_what_had_not_finished(tmp_path):
    identity = {"seed": 1, "data_sha256": "abc"}
    new = lambda: make_searcher("random", (1, 12, 12), 3, config=FAST)  # noqa: E731
    store = CandidateStore(tmp_path)
    with pytest.raises(Killed):
        run_search(start_search(store, identity, False, new), crashing_trainer(store, crash_at=4), store,
                   time_limit=60, max_candidates=8, parallel=2)
    finished = {r.id: r for r in store.records() if r.status.finished}
    assert sorted(finished) == [1, 2, 3] and store.record(4).status is Status.RUNNING
    assert store.spent() > 0

    with pytest.raises(ConfigError, match="seed differ"):
        start_search(store, {**identity, "seed": 2}, True, new)
    start = start_search(store, identity, True, new)
    # 4 was cut; 5 waited in its batch; 6 and 7 were proposed (in the background) before the crash
    assert start.resumed and [c.id for c in start.first] == [4, 5, 6, 7] and start.spent == store.spent()
    trained = []
    train = fake_trainer(store)

    def recording(candidates, deadline):
        trained.extend(c.id for c in candidates)
        return train(candidates, deadline)

    summary = run_search(start, recording, store, time_limit=60, max_candidates=8, parallel=2)
    assert trained == [4, 5, 6, 7, 8] and summary.n_candidates == 8
    assert all(store.record(i) == finished[i] for i in finished)  # untouched
    assert "search resumed: 3 candidates kept, 4 to train again" in (tmp_path / "search.log").read_text()


def test_the_time_already_spent_counts_against_the_budget(tmp_path):
    store = CandidateStore(tmp_path)
    new = lambda: make_searcher("random", (1, 12, 12), 3, config=FAST)  # noqa: E731
    start_search(store, {}, False, new)
    store.save_searcher(new())
    store.save_spent(59.5)
    train = fake_trainer(store, seconds=0.2)
    summary = run_search(start_search(store, {}, True, new), train, store, time_limit=60, max_candidates=100)
    assert summary.n_candidates <= 3 and summary.stopped == "time limit"
    assert 60.0 <= store.spent() <= 59.5 + summary.seconds


def test_resume_without_a_saved_search_starts_a_new_one(tmp_path):
    store = CandidateStore(tmp_path)
    start = start_search(store, {"seed": 1}, True, lambda: make_searcher("random", (1, 12, 12), 3, config=FAST))
    assert not start.resumed and start.first == [] and "nothing to resume" in (tmp_path / "search.log").read_text()


def test_search_identity_ignores_the_budget_but_not_the_search_space():
    import torch

    from automl.session import search_identity
    from automl.training.trainer import TensorData

    data = TensorData(torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long))
    base = search_identity(Params(), data)
    assert search_identity(Params().replace(**{"search.time_limit": 9000, "final_fit.epochs": 3}), data) == base
    assert search_identity(Params().replace(**{"search.max_depth": 5}), data) != base
    assert search_identity(Params(), TensorData(torch.ones(4, 1, 2, 2), data.y_train)) != base


def test_the_search_ends_early_by_the_reserve_and_saves_its_time_limit(tmp_path):
    """``reserve`` seconds are left at the budget's end (for a final fit inside the search's budget),
    asked again at each round; the time limit is saved beside the seconds spent."""
    store = CandidateStore(tmp_path)
    searcher = make_searcher("random", (1, 12, 12), 3, config=FAST)
    asked = []

    def reserve():
        asked.append(store.best())
        return 1.5 if store.best() else 0.0  # nothing to reserve before a candidate trained

    summary = run_search(fresh(searcher), fake_trainer(store, seconds=0.2), store, time_limit=2.0,
                         max_candidates=100, reserve=reserve)
    assert summary.stopped == "time limit" and summary.seconds < 1.0
    assert asked[0] is None and asked[-1] is not None
    assert 0.9 < store.time_left() <= 1.8
    assert "kept for the final fit" in (tmp_path / "search.log").read_text()
