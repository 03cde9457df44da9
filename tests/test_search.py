"""The search loop with a fake trainer: budget, cap, overlap of proposing and training, failures."""

import threading
import time

from automl.config import SearchConfig
from automl.search import CandidateStore, run_search
from automl.strategies import make_searcher

FAST = SearchConfig(t_min=0.1, neighbours=4)


def fake_trainer(store, seconds=0.0, fail_ids=()):
    threads = []

    def train_batch(candidates, deadline):
        threads.append(threading.current_thread().name)
        records = []
        for c in candidates:
            time.sleep(seconds)
            store.start(c)
            status = "failed" if c.id in fail_ids else "complete"
            summary = {"status": status, "val_accuracy": None if status == "failed" else 0.5 + c.id / 100,
                       "error": "boom" if status == "failed" else "", "epochs": 1}
            records.append(store.finish(c, summary, None))
        return records
    return train_batch, threads


def test_best_breaks_ties_of_accuracy_by_validation_loss(tmp_path):
    store = CandidateStore(tmp_path)
    searcher = make_searcher("random", (1, 12, 12), 3, config=FAST)
    (seed,) = searcher.ask(1)
    searcher.tell(seed.id, {"status": "complete", "val_accuracy": 0.95})
    for c, loss in zip([seed, *searcher.ask(3)], [0.5, 0.4, 0.2, 0.3]):
        store.start(c)
        store.finish(c, {"status": "complete", "val_accuracy": 0.95, "val_loss": loss}, None)
    assert store.best()["val_loss"] == 0.2


def test_stops_at_the_candidate_cap_and_records_failures(tmp_path):
    store = CandidateStore(tmp_path)
    searcher = make_searcher("random", (1, 12, 12), 3, config=FAST)
    train, _ = fake_trainer(store, fail_ids={3})
    summary = run_search(searcher, train, store, time_limit=60, max_candidates=7, parallel=2)
    assert summary.n_candidates == 7 and summary.n_failed == 1
    assert summary.best["id"] == 7 and len(searcher.observations) == 7
    assert "candidate #3 failed" in (tmp_path / "search.log").read_text()
    assert (tmp_path / "searcher.json").exists()


def test_stops_proposing_when_the_budget_is_spent(tmp_path):
    store = CandidateStore(tmp_path)
    train, _ = fake_trainer(store, seconds=0.3)
    start = time.time()
    summary = run_search(make_searcher("random", (1, 12, 12), 3, config=FAST), train, store,
                         time_limit=1.0, max_candidates=100)
    assert time.time() - start < 2.5 and 2 <= summary.n_candidates <= 5


def test_next_proposals_are_computed_while_a_round_trains(tmp_path):
    store = CandidateStore(tmp_path)
    searcher = make_searcher("bayesian", (1, 12, 12), 3, config=FAST)
    asked_during_training = []
    original_ask = searcher.ask

    def ask(n):
        asked_during_training.append(threading.current_thread().name.startswith("searcher"))
        return original_ask(n)

    searcher.ask = ask
    train, _ = fake_trainer(store, seconds=0.2)
    run_search(searcher, train, store, time_limit=60, max_candidates=5)
    assert any(asked_during_training)
