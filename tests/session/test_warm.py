"""Warm starts: a search that begins from an earlier search's best networks, scored not trained; what
may change between the runs (classes, input size) and what cannot be found."""

import pytest
import torch

from automl.arch.builder import build_module
from automl.config import Params
from automl.errors import ConfigError
from automl.search.records import Status
from automl.session import SearchSession
from automl.session.warm import new_head, roots_from_folder
from automl.training.trainer import TensorData, scores
from tests.training.test_trainer import bars

PARAMS = Params().replace(**{"train.max_epochs": 2, "train.batch_size": 32, "train.threads": 1,
                             "search.time_limit": 60, "search.max_candidates": 3, "search.strategy": "random"})


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> tuple:
    """A finished search of three candidates on bars, and the data it ran on."""
    folder = tmp_path_factory.mktemp("earlier")
    data = TensorData(*bars(96, 0), *bars(32, 1))
    session = SearchSession(folder, PARAMS)
    session.run(session.start(data, [0, 1]), session.in_process(data))
    return folder, session.store


def test_the_new_search_starts_with_the_earlier_best_networks_scored_on_its_own_validation_split(earlier, tmp_path):
    folder, before = earlier
    roots = roots_from_folder(folder, top=2)
    assert [r.origin.candidate for r in roots] == [r.id for r in before.ranked()[:2]]
    data = TensorData(*bars(128, 2), *bars(48, 3))  # new images, same classes
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.warm_start": str(folder)}))
    session.run(session.start(data, [0, 1], roots=roots), session.in_process(data))
    records = session.store.records()
    first = records[:2]
    assert [r.origin.candidate for r in first] == [r.origin.candidate for r in roots]
    for record, root in zip(first, roots):
        assert record.status is Status.COMPLETE and record.epochs == 0 and record.stopped == "warm start"
        model = build_module(root.graph)
        model.load_state_dict(before.weights(root.origin.candidate))
        assert record.val_accuracy == scores(model.eval(), data.x_val, data.y_val)[0]  # scored, not trained
        assert torch.equal(session.store.weights(record.id)["ops.L3.weight"],
                           before.weights(root.origin.candidate)["ops.L3.weight"])
    later = records[2:]
    assert later and all(r.origin is None and r.parent_id for r in later)  # morphs grow from the roots
    assert "warm start: root 0 is candidate" in (tmp_path / "search.log").read_text()


def test_new_classes_keep_the_body_and_train_a_fresh_head(earlier, tmp_path):
    folder, before = earlier
    roots = roots_from_folder(folder, top=1)
    graph, weights = new_head(roots[0].graph, roots[0].weights, 3, seed=0)
    head = f"ops.L{graph.layers[-1].inputs[0]}."
    assert graph.n_classes == 3 and weights[head + "weight"].shape[0] == 3
    assert all(torch.equal(v, roots[0].weights[k]) for k, v in weights.items() if not k.startswith(head))
    x, y = bars(96, 4)
    data = TensorData(x, torch.where(torch.arange(96) % 5 == 0, 2, y), *bars(32, 5))
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.max_candidates": 1}))
    session.run(session.start(data, [0, 1, 2], roots=roots), session.in_process(data))
    (record,) = session.store.records()
    assert record.origin.head_reset and record.epochs > 0 and record.status is Status.COMPLETE
    assert "the classes changed (new: 2)" in (tmp_path / "search.log").read_text()


def test_another_input_size_is_refused_or_starts_from_the_seed_network_as_asked(earlier, tmp_path):
    folder, _ = earlier
    roots = roots_from_folder(folder, top=1)
    data = TensorData(*(t[:, :, :8, :8] if t.dim() == 4 else t for t in (*bars(64, 0), *bars(32, 1))))
    with pytest.raises(ConfigError, match=r"take inputs of 1x10x10, this data 1x8x8.*warm_start_mismatch=seed"):
        SearchSession(tmp_path / "a", PARAMS).start(data, [0, 1], roots=roots)
    session = SearchSession(tmp_path / "b", PARAMS.replace(**{"search.warm_start_mismatch": "seed",
                                                              "search.max_candidates": 1}))
    session.run(session.start(data, [0, 1], roots=roots), session.in_process(data))
    assert session.store.records()[0].origin is None  # the seed network
    assert "starting from the seed network" in (tmp_path / "b" / "search.log").read_text()


def test_a_folder_without_a_search_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="search.warm_start=.*no search there"):
        roots_from_folder(tmp_path / "nowhere", top=3)
    with pytest.raises(ConfigError, match="needs a strategy that searches"):
        Params().replace(**{"search.warm_start": "x", "search.strategy": "initial"})
