"""The contract every search strategy keeps, run against each with a fake trainer."""

import json

import pytest

from automl.searcher import STRATEGY_CLASSES, make_searcher, searcher_from_state

SHAPE, CLASSES = (1, 12, 12), 3


def fake_result(candidate) -> dict:
    """A deterministic 'accuracy' from the architecture, so no training is needed."""
    return {"status": "complete", "val_accuracy": (candidate.graph.param_count() % 97) / 100}


@pytest.fixture(params=sorted(STRATEGY_CLASSES))
def strategy(request) -> str:
    return request.param


def drive(searcher, rounds: int, n: int = 2) -> list:
    told = []
    for _ in range(rounds):
        batch = searcher.ask(n)
        if not batch:
            break
        for c in batch:
            searcher.tell(c.id, fake_result(c))
            told.append(c)
    return told


def test_ask_gives_distinct_new_ids_and_valid_graphs(strategy):
    searcher = make_searcher(strategy, SHAPE, CLASSES, seed=0)
    told = drive(searcher, rounds=3)
    assert told, "a strategy proposes at least the initial network"
    assert len({c.id for c in told}) == len(told)
    for c in told:
        assert c.graph.input_shape == SHAPE and c.graph.shapes()[c.graph.output_id] == (CLASSES,)
    assert searcher.best() is not None


def test_tell_refuses_unknown_or_repeated_ids(strategy):
    searcher = make_searcher(strategy, SHAPE, CLASSES, seed=0)
    (c,) = searcher.ask(1)
    searcher.tell(c.id, fake_result(c))
    with pytest.raises(KeyError):
        searcher.tell(c.id, fake_result(c))
    with pytest.raises(KeyError):
        searcher.tell(999, fake_result(c))


def test_state_survives_json_mid_search(strategy):
    a = make_searcher(strategy, SHAPE, CLASSES, seed=7)
    drive(a, rounds=1)
    pending = a.ask(1)
    b = searcher_from_state(json.loads(json.dumps(a.to_state())))
    assert b.to_state() == a.to_state()
    for c in pending:  # a restored searcher accepts results for candidates asked before the save
        a.tell(c.id, fake_result(c))
        b.tell(c.id, fake_result(c))
    assert [c.to_dict() for c in a.ask(2)] == [c.to_dict() for c in b.ask(2)]


def test_failed_candidates_are_recorded_not_best(strategy):
    searcher = make_searcher(strategy, SHAPE, CLASSES, seed=0)
    (c,) = searcher.ask(1)
    searcher.tell(c.id, {"status": "failed", "val_accuracy": 0.99, "error": "boom"})
    assert searcher.observations[0].status == "failed" and searcher.best() is None


def test_initial_strategy_trains_only_the_seed_network():
    searcher = make_searcher("initial", SHAPE, CLASSES)
    (c,) = searcher.ask(5)
    assert c.parent_id is None and c.operation is None
    searcher.tell(c.id, fake_result(c))
    assert searcher.ask(5) == []
