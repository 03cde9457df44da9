"""The orchestration both faces use: training and recording a candidate, configuration checks before
any candidate, the memory limit handed to the searcher, the final fit's typed failure."""

import pytest
import torch

from automl.arch.builder import ShiftedViews, build_module
from automl.arch.graph import initial_graph
from automl.config import Params, TrainConfig
from automl.errors import ConfigError, FinalFitError
from automl.search.records import Status
from automl.search.store import CandidateStore
from automl.search.strategies import make_searcher
from automl.session import SearchSession, check_params, load_network, train_and_record
from automl.session.network import Views
from automl.training.protocol import auto_batch_size
from automl.training.trainer import TensorData
from tests.training.test_trainer import bars

PARAMS = Params().replace(**{"train.max_epochs": 1, "train.batch_size": 32, "train.threads": 1,
                             "search.time_limit": 30, "final_fit.epochs": 1})


@pytest.fixture(scope="module")
def data() -> TensorData:
    return TensorData(*bars(96, 0), *bars(32, 1))


def test_a_recorded_candidate_says_where_its_time_went(data, tmp_path):
    store = CandidateStore(tmp_path)
    (seed,) = make_searcher("random", (1, 10, 10), 2).ask(1)
    record = train_and_record(seed, store, data, TrainConfig(max_epochs=2, batch_size=32, threads=1), seed=0,
                              deadline=None)
    assert record.status is Status.COMPLETE and store.record(seed.id) == record
    timing = record.timing
    assert timing["epochs"] == pytest.approx(sum(h["seconds"] for h in record.history), abs=1e-3)
    assert 0 < timing["epochs"] < timing["wall"] and timing["store"] > 0
    assert timing["wall"] >= sum(v for k, v in timing.items() if k != "wall") - 1e-3


def test_unknown_operations_are_a_config_error():
    with pytest.raises(ConfigError, match="search.operations: unknown teleport"):
        check_params(PARAMS.replace(**{"search.operations": "wider_conv,teleport"}))
    check_params(PARAMS.replace(**{"search.operations": "wider_conv, skip_add"}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_stops_before_any_candidate(data, tmp_path):
    session = SearchSession(tmp_path, PARAMS.replace(**{"train.device": "cuda"}))
    with pytest.raises(ConfigError, match="CUDA is not available"):
        session.start(data, [0, 1])
    assert session.store.records() == []


def test_the_searcher_gets_its_memory_limit_from_the_session(data, tmp_path):
    start = SearchSession(tmp_path, PARAMS.replace(**{"search.max_memory_mb": 500})).start(data, [0, 1])
    assert start.searcher.memory_limit_mb == 500
    auto = SearchSession(tmp_path / "auto", PARAMS).start(data, [0, 1])
    assert 0 < auto.searcher.memory_limit_mb < float("inf")
    with pytest.raises(ConfigError, match="max_memory_mb=0.01 is below what the seed network needs"):
        SearchSession(tmp_path / "tiny", PARAMS.replace(**{"search.max_memory_mb": 0.01})).start(data, [0, 1])


def test_search_best_and_final_fit_in_one_session(data, tmp_path):
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.strategy": "initial"}))
    start = session.start(data, [0, 1])
    summary = session.run(start, session.in_process(data), time_limit=3)
    best = session.best(summary)
    assert best.succeeded and best == session.store.best()
    final = session.final_fit(session.store.graph(best.id), session.store.weights(best.id), data, tmp_path / "final")
    graph, module = load_network(tmp_path / "final", views=False)
    assert graph == final.graph and not module.training
    assert all(torch.equal(v, final.state[k]) for k, v in module.state_dict().items())


def test_a_final_fit_that_loses_accuracy_on_its_own_data_keeps_the_searched_weights(data, tmp_path):
    """A learning rate of 1 against a huge decay leaves a finite loss and a network near chance: the
    final fit's own data shows the damage, so the searched weights (trained on the same data) are saved."""
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.strategy": "initial", "train.max_epochs": 6}))
    best = session.best(session.run(session.start(data, [0, 1]), session.in_process(data), time_limit=20))
    searched = session.store.weights(best.id)
    ruin = SearchSession(tmp_path, session.params.replace(**{"train.weight_decay": 1e4, "train.learning_rate": 1.0,
                                                          "train.lr_schedule": "constant", "final_fit.epochs": 3}))
    final = ruin.final_fit(session.store.graph(best.id), searched, data, tmp_path / "ruined")
    assert final.kept_searched and final.fit_accuracy < final.searched_fit_accuracy - 0.2
    kept_weights = load_network(tmp_path / "ruined", views=False)[1].state_dict()
    assert all(torch.equal(v, searched[k]) for k, v in kept_weights.items())
    assert "kept the searched weights" in (tmp_path / "ruined" / "notes.txt").read_text()
    kept = session.final_fit(session.store.graph(best.id), searched, data, tmp_path / "final")
    assert not kept.kept_searched and kept.fit_accuracy >= kept.searched_fit_accuracy - 0.01
    assert not any(torch.equal(v, searched[k]) for k, v in kept.state.items() if v.is_floating_point())


def test_lr_scale_sets_the_final_fits_rate_from_searched_weights_and_not_from_scratch(data, tmp_path):
    """The same final fit with ``final_fit.lr_scale`` 1e-6 barely moves the searched weights, where the
    full rate moves them; a final fit from scratch (``retrain``) trains at the full rate whatever the scale."""
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.strategy": "initial"}))
    best = session.best(session.run(session.start(data, [0, 1]), session.in_process(data), time_limit=5))
    graph, searched = session.store.graph(best.id), session.store.weights(best.id)

    def moved(**overrides) -> float:
        """The largest change of a learned weight (BatchNorm's running statistics move at any rate)."""
        fit = SearchSession(tmp_path, session.params.replace(**overrides)).final_fit(graph, searched, data,
                                                                                     tmp_path / "final")
        return max(float((v - searched[k]).abs().max()) for k, v in fit.state.items()
                   if v.is_floating_point() and "running" not in k)

    assert moved(**{"final_fit.lr_scale": 1e-6}) < 0.1 * moved()
    scratch = SearchSession(tmp_path, session.params.replace(**{"final_fit.lr_scale": 1e-6, "final_fit.retrain": True,
                                                              "final_fit.epochs": 3}))
    assert scratch.final_fit(graph, searched, data, tmp_path / "scratch").fit_accuracy > 0.9


def test_a_final_fit_that_averages_its_last_epochs_saves_and_says_so(data, tmp_path):
    """``final_fit.average`` reaches the trainer: the saved weights are the average it returned, the
    record counts the epoch ends in it, and notes.txt says so."""
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.strategy": "initial", "final_fit.average": 0.5,
                                                       "final_fit.epochs": 4}))
    best = session.best(session.run(session.start(data, [0, 1]), session.in_process(data), time_limit=5))
    everything = TensorData(data.x_train, data.y_train)  # a final fit: no validation left
    final = session.final_fit(session.store.graph(best.id), session.store.weights(best.id), everything,
                              tmp_path / "final")
    assert final.fields()["averaged_epochs"] == 3 and not final.kept_searched  # the ends of epochs 2, 3 and 4
    saved = load_network(tmp_path / "final", views=False)[1].state_dict()
    assert all(torch.equal(saved[k], v) for k, v in final.state.items())
    assert "last 3 epochs" in (tmp_path / "final" / "notes.txt").read_text()


def test_the_final_model_reads_shifted_copies_it_trained_on_and_loads_with_them(data, tmp_path):
    """``final_fit.test_shifts`` is saved with the final model, so a loaded model predicts as the fitted
    one did; never a shift beyond the training crops', none without augmentation, off at 0."""
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.strategy": "initial"}))
    best = session.best(session.run(session.start(data, [0, 1]), session.in_process(data), time_limit=5))
    graph, searched = session.store.graph(best.id), session.store.weights(best.id)
    final = session.final_fit(graph, searched, data, tmp_path / "final")
    assert final.views == Views(shift=1) and final.fields()["test_views"] == 9
    module = load_network(tmp_path / "final")[1]
    assert isinstance(module, ShiftedViews) and torch.allclose(module(data.x_val), final.module()(data.x_val))
    assert "over 9 copies" in (tmp_path / "final" / "notes.txt").read_text()
    plain = load_network(tmp_path / "final", views=False)[1]
    assert torch.allclose(plain(data.x_val), build_module_with(graph, final.state)(data.x_val))

    def views(**overrides) -> Views:
        return Views.of(PARAMS.replace(**overrides))

    assert views(**{"final_fit.test_shifts": 2, "train.crop_padding": 1, "train.flip": True}) == Views(1, True)
    assert views(**{"train.augment": False}) == Views() == views(**{"final_fit.test_shifts": 0})
    off = SearchSession(tmp_path, session.params.replace(**{"final_fit.test_shifts": 0}))
    off.final_fit(graph, searched, data, tmp_path / "final")
    assert not (tmp_path / "final" / "views.json").exists()
    assert not isinstance(load_network(tmp_path / "final")[1], ShiftedViews)


def build_module_with(graph, state) -> torch.nn.Module:
    module = build_module(graph)
    module.load_state_dict(state)
    return module.eval()


def test_a_failed_final_fit_is_a_typed_error_that_keeps_the_search(data, tmp_path):
    session = SearchSession(tmp_path, PARAMS.replace(**{"train.learning_rate": 1e30}))
    with pytest.raises(FinalFitError, match="final fit failed: FloatingPointError"):
        session.final_fit(initial_graph((1, 10, 10), 2, width=8), None, data, tmp_path / "final")
    assert not (tmp_path / "final" / "weights.pt").exists()


def test_the_final_fit_follows_the_protocol_the_candidates_got(tmp_path):
    """Sized from 700 training images: batch 16, 10 epochs for 400 steps. The final fit's 1,000 images
    alone would give batch 32 and 13 epochs; it trains in the candidates' batches for twice their epochs."""
    auto = Params().replace(**{"train.threads": 1, "train.candidate_steps": 400, "search.strategy": "initial"})
    search_data, final_data = TensorData(*bars(700, 0), *bars(64, 1)), TensorData(*bars(1_000, 2))
    session = SearchSession(tmp_path, auto)
    session.run(session.start(search_data, [0, 1]), session.in_process(search_data), time_limit=2)
    assert session.store.protocol() == {"batch_size": 16, "max_epochs": 10, "patience": 10}
    best = session.best()
    final = SearchSession(tmp_path, auto).final_fit(session.store.graph(best.id), session.store.weights(best.id),
                                                    final_data, tmp_path / "final")
    assert final.result.epochs == 20 and auto_batch_size(1_000) == 32


def test_a_final_fit_with_a_time_limit_ends_by_it(data, tmp_path):
    """10,000 epochs asked for, a 1 s limit: the fit stops at the deadline with its weights saved (the
    schedule anneals to the deadline: tests/training), so one budget can hold search and final fit."""
    session = SearchSession(tmp_path, PARAMS.replace(**{"final_fit.time_limit": 1.0, "final_fit.epochs": 10_000}))
    all_data = TensorData(data.x_train, data.y_train)  # as a final fit has it: nothing held out
    final = session.final_fit(initial_graph((1, 10, 10), 2, width=8), None, all_data, tmp_path / "final")
    assert final.result.stopped == "deadline" and 1 <= final.result.epochs < 10_000
    assert (tmp_path / "final" / "weights.pt").is_file()


def test_a_final_fit_in_the_search_budget_gets_the_time_the_search_left(data, tmp_path):
    """``final_fit.in_search_budget``: the search keeps the best's expected final fit free at its end,
    and the final fit is held to what the search left (here 1 s of 60: it stops at that deadline, not
    at its 10,000 epochs); without it the same final fit has no limit."""
    params = PARAMS.replace(**{"search.strategy": "random", "search.max_candidates": 2,
                               "final_fit.in_search_budget": True})
    session = SearchSession(tmp_path, params)
    session.run(session.start(data, [0, 1]), session.in_process(data), time_limit=60)
    assert 0 < session.store.time_left() < 60
    assert "of the budget kept for the final fit" in (tmp_path / "search.log").read_text()
    session.store.save_spent(59.0, 60.0)
    session = SearchSession(tmp_path, params.replace(**{"final_fit.epochs": 10_000}))
    best, all_data = session.store.best(), TensorData(data.x_train, data.y_train)
    final = session.final_fit(session.store.graph(best.id), session.store.weights(best.id), all_data, tmp_path / "f")
    assert final.result.stopped == "deadline" and 1 <= final.result.epochs < 10_000
    unbounded = SearchSession(tmp_path, params.replace(**{"final_fit.epochs": 2, "final_fit.in_search_budget": False}))
    final = unbounded.final_fit(session.store.graph(best.id), None, all_data, tmp_path / "g")
    assert final.result.stopped == "max_epochs"
    with pytest.raises(ConfigError, match="leave final_fit.time_limit 0"):
        params.replace(**{"final_fit.time_limit": 10})


def test_fitted_members_train_after_the_best_each_in_its_share_of_the_time(data, tmp_path):
    """``final_fit.fitted_members`` 2 of an ensemble of 3: the second network is final-fitted too (its
    weights move), in the second half of the time limit; the third keeps its searched weights."""
    params = PARAMS.replace(**{"search.strategy": "random", "search.max_candidates": 3, "final_fit.ensemble": 3,
                               "final_fit.fitted_members": 2, "final_fit.time_limit": 2.0,
                               "final_fit.epochs": 10_000})
    session = SearchSession(tmp_path, params)
    session.run(session.start(data, [0, 1]), session.in_process(data), time_limit=30)
    best, second, third = session.store.ranked()[:3]
    members, all_data = session.ensemble_members(best.id), TensorData(data.x_train, data.y_train)
    final = session.final_fit(session.store.graph(best.id), session.store.weights(best.id), all_data,
                              tmp_path / "final", members=members)
    assert final.result.stopped == "deadline"  # at the end of its half of the time, not of its 10,000 epochs
    assert final.fields()["fitted_members"] == 2 and final.fields()["ensemble"] == 3
    (fitted, fitted_state), (searched, searched_state) = final.members
    assert fitted == session.store.graph(second.id) and searched == session.store.graph(third.id)
    assert any(not torch.equal(fitted_state[k], v) for k, v in session.store.weights(second.id).items())
    assert all(torch.equal(searched_state[k], v) for k, v in session.store.weights(third.id).items())
    notes = (tmp_path / "final" / "notes.txt").read_text()
    assert "next 1 candidates by validation accuracy, final-fitted the same way" in notes and "1/2 of the time" in notes
    assert len(load_network(tmp_path / "final", views=False)[1].members) == 3


def test_snapshots_split_the_final_fit_into_cycles_and_average_their_ends(data, tmp_path):
    """``final_fit.snapshots`` 2 of a 4-epoch final fit: two cycles of 2 epochs, the second from the end of
    the first, one result counting all 4 epochs, and a saved final model that averages both ends."""
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.strategy": "initial", "final_fit.epochs": 4}))
    best = session.best(session.run(session.start(data, [0, 1]), session.in_process(data), time_limit=5))
    graph, all_data = session.store.graph(best.id), TensorData(data.x_train, data.y_train)
    one = session.final_fit(graph, session.store.weights(best.id), all_data, tmp_path / "one")
    cycles = SearchSession(tmp_path, session.params.replace(**{"final_fit.snapshots": 2}))
    seen = []
    final = cycles.final_fit(graph, session.store.weights(best.id), all_data, tmp_path / "final", on_epoch=seen.append)
    assert one.snapshots == 1 and not one.members and final.snapshots == 2 and final.result.epochs == 4
    assert final.searched_fit_accuracy == one.searched_fit_accuracy  # the searched weights', not the first cycle's
    assert [h["epoch"] for h in final.result.history] == [1, 2, 3, 4]
    assert [(e.epoch, e.max_epochs) for e in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]  # as the console counts
    ((member, snapshot),) = final.members
    assert member == graph and any(not torch.equal(snapshot[k], v) for k, v in final.state.items())
    assert len(load_network(tmp_path / "final", views=False)[1].members) == 2
    assert torch.allclose(load_network(tmp_path / "final")[1](data.x_val), final.module()(data.x_val))
    assert "2 annealed cycles" in (tmp_path / "final" / "notes.txt").read_text()
    with pytest.raises(ConfigError, match="final_fit.snapshots"):
        PARAMS.replace(**{"final_fit.snapshots": 0})


def test_an_ensemble_final_model_is_saved_loaded_and_replaced_whole(data, tmp_path):
    """With ``final_fit.ensemble`` 3 the final model averages the final-fitted best with the next two
    candidates as searched; a later final fit without an ensemble leaves no stale member behind."""
    session = SearchSession(tmp_path, PARAMS.replace(**{"search.strategy": "random", "search.max_candidates": 4,
                                                         "final_fit.ensemble": 3}))
    session.run(session.start(data, [0, 1]), session.in_process(data), time_limit=30)
    best, second, third = session.store.ranked()[:3]
    members = session.ensemble_members(best.id)
    assert [g for g, _ in members] == [session.store.graph(second.id), session.store.graph(third.id)]
    final = session.final_fit(session.store.graph(best.id), session.store.weights(best.id), data, tmp_path / "final",
                              members=members)
    graph, module = load_network(tmp_path / "final", views=False)
    assert graph == final.graph and final.fields()["ensemble"] == 3 and len(module.members) == 3
    assert torch.allclose(load_network(tmp_path / "final")[1](data.x_val), final.module()(data.x_val))
    assert "averages it with the next 2 candidates" in (tmp_path / "final" / "notes.txt").read_text()
    session.final_fit(graph, final.state, data, tmp_path / "final")
    alone = load_network(tmp_path / "final", views=False)[1]
    assert not (tmp_path / "final" / "members").exists() and isinstance(alone, type(build_module(graph)))
