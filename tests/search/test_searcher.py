"""The contract every search strategy keeps, run against each with a fake trainer."""

import json

import pytest

from automl.config import SearchConfig
from automl.search.strategies import STRATEGY_CLASSES, searcher_from_state
from automl.search.strategies import make_searcher as _make

SHAPE, CLASSES = (1, 12, 12), 3
FAST = SearchConfig(t_min=0.1, neighbours=4)  # a shorter annealing keeps the contract suite quick


def make_searcher(name, shape, classes, seed=0, config=None):
    return _make(name, shape, classes, seed, config or FAST)


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


def test_config_accepts_exactly_the_implemented_strategies():
    from automl.config import STRATEGIES

    assert set(STRATEGIES) == set(STRATEGY_CLASSES)


MORPHING = [s for s in sorted(STRATEGY_CLASSES) if s != "initial"]


@pytest.mark.parametrize("name", MORPHING)
def test_batches_are_distinct_children_of_trained_architectures(name):
    from automl.search.kernel import describe

    searcher = make_searcher(name, SHAPE, CLASSES, seed=1)
    told = drive(searcher, rounds=6, n=3)
    assert len(told) > 6
    assert len({describe(c.graph) for c in told}) == len(told)  # never a duplicate
    trained = {c.id for c in told}
    for c in told[1:]:
        assert c.parent_id in trained and c.parent_id < c.id and c.operation
        assert c.graph.history[-1]["op"] == c.operation.split("+")[-1]


@pytest.mark.parametrize("name", MORPHING)
def test_user_limits_hold_operations_depth_and_memory(name):
    from automl.arch.graph import initial_graph
    from automl.arch.memory import estimate_memory_mb

    seed_mb = estimate_memory_mb(initial_graph(SHAPE, CLASSES), 128)
    config = SearchConfig(operations="wider_conv,deeper_conv", max_depth=4, max_memory_mb=seed_mb * 1.5,
                          t_min=0.1, neighbours=4)
    searcher = make_searcher(name, SHAPE, CLASSES, seed=2, config=config)
    told = drive(searcher, rounds=8, n=2)
    for c in told[1:]:
        assert set(c.operation.split("+")) <= {"wider_conv", "deeper_conv"}
        assert sum(l.type == "conv" for l in c.graph.layers) <= 4
        assert c.info["estimated_memory_mb"] <= seed_mb * 1.5 + 0.1


def test_out_of_memory_lowers_the_limit_below_that_candidate():
    searcher = make_searcher("random", SHAPE, CLASSES, seed=0)
    (c,) = searcher.ask(1)
    searcher.tell(c.id, {"status": "failed", "error": "RuntimeError: CUDA out of memory"})
    assert searcher.memory_limit_mb < c.info["estimated_memory_mb"]


def test_bayesian_records_why_it_chose_each_child():
    searcher = make_searcher("bayesian", SHAPE, CLASSES, seed=0)
    drive(searcher, rounds=2)
    (c,) = searcher.ask(1)
    assert {"ucb", "gp_mean", "gp_std", "estimated_memory_mb"} <= set(c.info)
    assert c.info["ucb"] == pytest.approx(c.info["gp_mean"] + FAST.beta * c.info["gp_std"], abs=1e-5)


def test_only_the_initial_strategy_trains_its_candidate_until_the_deadline():
    for name in STRATEGY_CLASSES:
        (c,) = make_searcher(name, SHAPE, CLASSES).ask(1)
        assert c.info.get("until_deadline", False) == (name == "initial")
