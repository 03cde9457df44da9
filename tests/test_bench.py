"""The strategy benchmark's bookkeeping: the headline table must average the right runs, or the README
and ``latest.json`` would report figures no run produced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automl.arch.graph import initial_graph
from automl.search.records import CandidateRecord, Reasoning, Status
from bench.common import machine, sprite_labels
from bench.final_length import ensemble_summary, pair_summary, paired_summary
from bench.ranking_rules import RULES, final_fit_summary, gp_means, regrets
from bench.search_strategies import (
    FINAL_SHARE,
    accuracy_section,
    best_so_far,
    ensemble_accuracies,
    ensemble_gains,
    inheritance_gaps,
    key,
    summarize,
    time_to_seed_accuracy,
)


def run(strategy: str, seed: int, accuracy: float, budget: float = 600.0, final_epochs: int = 0,
        overrides: list[str] | None = None, candidates: int = 5, final_share: float = FINAL_SHARE) -> dict:
    return {"dataset": "digits8x8", "budget": budget, "strategy": strategy, "seed": seed,
            "final_epochs": final_epochs, "overrides": overrides or [], "test_accuracy": accuracy,
            "n_candidates": candidates, "final_share": final_share}


def test_summary_cells_average_over_seeds_per_dataset_budget_and_strategy() -> None:
    rows = [run("bayesian", 0, 0.96, candidates=40), run("bayesian", 1, 0.98, candidates=50),
            run("random", 0, 0.97), run("bayesian", 0, 0.90, budget=120.0)]
    cells = summarize(rows)["digits8x8"]
    assert cells["600.0"]["bayesian"] == pytest.approx({"mean": 0.97, "std": 0.01, "n": 2, "candidates": 45})
    assert cells["600.0"]["random"]["n"] == 1
    assert cells["120.0"]["bayesian"]["mean"] == pytest.approx(0.90)


def test_the_headline_table_keeps_only_the_default_protocol_and_lists_the_svc_apart() -> None:
    rows = [run("bayesian", 0, 0.96), run("bayesian", 1, 0.99, final_epochs=100),
            run("bayesian", 2, 0.50, overrides=["train.max_epochs=30"]),
            run("bayesian", 3, 0.70, final_share=0.0),  # the search had the whole budget: another protocol
            {"dataset": "digits8x8", "budget": 0, "strategy": "svc", "seed": 0, "final_epochs": 0,
             "overrides": [], "test_accuracy": 0.98},
            {"dataset": "digits8x8", "budget": 0, "strategy": "logreg", "seed": 0, "final_epochs": 0,
             "overrides": [], "test_accuracy": 0.95}]
    section = accuracy_section(rows)
    assert section["summary"] == {"digits8x8": {"600.0": {"bayesian": {"mean": 0.96, "std": 0.0, "n": 1,
                                                                       "candidates": 5.0}}}}
    assert section["svc"] == {"digits8x8": 0.98} and section["logreg"] == {"digits8x8": 0.95}
    assert section["runs"] == rows


def test_a_row_names_the_machine_it_ran_on_and_rows_of_two_machines_are_two_measurements(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu\n")
    assert machine(cpuinfo).startswith("Example CPU 9000, ") and " cores, " in machine(cpuinfo)
    assert machine(tmp_path / "absent").startswith("unknown CPU, ")
    here, there = run("bayesian", 0, 0.9), run("bayesian", 0, 0.9)
    here["machine"], there["machine"] = machine(cpuinfo), "Other CPU, 2 cores, bf16"
    assert key(here) != key(there) and key(here) == key(dict(here, test_accuracy=0.5))


def test_inheritance_gaps_count_only_children_of_function_preserving_morphs() -> None:
    def record(id: int, parent: int | None, operation: str | None, **fields: float) -> CandidateRecord:
        return CandidateRecord(id, parent, operation, "", 0, Reasoning(), Status.COMPLETE, **fields)

    records = [record(1, None, None, val_accuracy=0.9),
               record(2, 1, "wider_conv+skip_add", inherited_val_accuracy=0.9, val_accuracy=0.9),
               record(3, 1, "deeper_dense", inherited_val_accuracy=0.85, val_accuracy=0.9),
               record(4, 1, "shrink_remove", inherited_val_accuracy=0.1, val_accuracy=0.9)]
    assert inheritance_gaps(records) == pytest.approx([0.0, 0.05])


def test_time_to_seed_accuracy_reads_each_runs_best_so_far_curve_against_its_own_seed() -> None:
    def record(id: int, accuracy: float, finished: float) -> CandidateRecord:
        return CandidateRecord(id, None, None, "", 0, Reasoning(), Status.COMPLETE, val_accuracy=accuracy,
                               finished_at=finished)

    curve = best_so_far([record(2, 0.80, 130.0), record(1, 0.90, 112.0), record(3, 0.95, 160.0)], start=100.0)
    assert curve == [(12.0, 0.90), (30.0, 0.90), (60.0, 0.95)]
    rows = [{**run("bayesian", 0, 0.9, budget=120.0), "curve": curve},
            {**run("bayesian", 1, 0.9, budget=120.0), "curve": [(100.0, 0.5)]},
            {**run("bayesian", 2, 0.9, budget=120.0)},  # no curve recorded: left out
            {**run("initial", 0, 0.9, budget=120.0), "best_val_accuracy": 0.9},
            {**run("initial", 1, 0.9, budget=120.0), "best_val_accuracy": 0.6},
            {**run("initial", 2, 0.9, budget=120.0), "best_val_accuracy": 0.6}]
    assert time_to_seed_accuracy(rows) == {"digits8x8": {"120.0": [0.1, None]}}


def test_ensembles_average_the_softmax_of_the_best_ranked_members_and_can_swap_in_the_final_fit() -> None:
    """Three one-layer "networks": the best alone gets 2 of 3 right, the top two average to all right, the
    top three to 2 of 3 again; a final-fitted best that leans to class 0 still gets all right with the second."""
    def fixed(weight: list[list[float]]) -> torch.nn.Module:
        layer = torch.nn.Linear(2, 2, bias=False)
        layer.weight.data = torch.tensor(weight)
        return layer

    x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 1])
    ranked = [fixed([[2.0, 0.0], [0.0, 1.0]]), fixed([[0.0, 0.0], [0.0, 3.0]]), fixed([[9.0, 0.0], [0.0, 0.0]])]
    out = ensemble_accuracies(ranked, fixed([[1.0, 1.0], [0.0, 0.0]]), x, y)
    assert out["ensemble_searched"] == pytest.approx({"1": 2 / 3, "2": 1.0, "3": 2 / 3})
    assert out["ensemble_final"] == pytest.approx({"2": 1.0, "3": 2 / 3})


def test_ensemble_gains_compare_unshifted_with_unshifted() -> None:
    """The ensembles are scored without test-time shifts: a run that has them is compared with its
    unshifted accuracy, one from before them with its only one."""
    rows = [{**run("bayesian", 0, 0.95), "test_accuracy_unshifted": 0.90, "ensemble_final": {"5": 0.91}},
            {**run("bayesian", 1, 0.93), "ensemble_final": {"5": 0.92}}, run("bayesian", 2, 0.9)]
    cell = ensemble_gains(rows)["digits8x8"]["5"]
    assert cell["mean"] == pytest.approx(0.0) and cell["std"] == pytest.approx(1.0)
    assert (cell["better"], cell["worse"], cell["n"]) == (1, 1, 2)


def test_training_flops_count_the_forward_and_the_weight_gradient_per_image() -> None:
    """A bias-free 10 -> 5 layer: 2*10*5 FLOPs forward and as many for its weight's gradient (the input
    needs none), whatever the batch size."""
    from bench.throughput import training_flops_per_image

    layer = torch.nn.Linear(10, 5, bias=False)
    for n in (1, 7):
        assert training_flops_per_image(layer, torch.randn(n, 10), torch.zeros(n, dtype=torch.long)) == 200
    assert layer.weight.grad is None


def test_nightly_days_see_growing_prefixes_and_the_warm_chain_shares_the_cold_first_day(tmp_path) -> None:
    import json

    import numpy as np

    from bench import nightly

    days = nightly.day_rows(np.arange(100, 200), [0.6, 0.8, 1.0], seed=0)
    assert [len(d) for d in days] == [60, 80, 100] and set(days[0]) < set(days[1]) < set(days[2])
    assert sorted(days[2]) == list(range(100, 200))

    def row(chain: str, day: int, seed: int, acc: float) -> dict:
        return {"dataset": "d", "budget": 60.0, "chain": chain, "day": day, "seed": seed, "test_accuracy": acc}

    table = nightly.report([row("cold", 1, 0, 0.8), row("cold", 1, 1, 0.9), row("cold", 2, 0, 0.85),
                            row("warm", 2, 0, 0.95)], "d", 60.0, 2, tmp_path / "latest.json")
    assert table["day 1"]["warm"] == table["day 1"]["cold"] == {"mean": 0.85, "std": 0.05, "seeds": 2}
    assert table["day 2"] == {"cold": {"mean": 0.85, "std": 0.0, "seeds": 1}, "warm": {"mean": 0.95, "std": 0.0,
                                                                                       "seeds": 1}}
    assert json.loads((tmp_path / "latest.json").read_text())["nightly"]["table"] == table


def test_sprite_rotation_labels_give_one_label_to_rotations_that_show_the_same_image() -> None:
    shapes = np.array([0, 0, 0, 1, 1, 2, 2, 2])  # square, square, square, ellipse, ellipse, heart x 3
    rotation = np.array([0.1, 0.1 + np.pi / 2, 2 * np.pi, 0.1, 0.1 + np.pi, 0.1, 0.1 + np.pi / 2, 2 * np.pi])
    latents = np.zeros((len(shapes), 6), dtype=int)
    latents[:, 1], latents[:, 2] = shapes, 5
    labels = sprite_labels(latents, rotation, rotation_bins=4)
    assert labels[0] == labels[1] == labels[2] == "0"  # a square turned by 90 degrees (or 360) is the same
    assert labels[3] == labels[4] == "4"  # an ellipse turned by 180 degrees too
    assert list(labels[5:]) == ["8", "9", "8"]  # a heart only by 360
    assert list(sprite_labels(latents, rotation, rotation_bins=8)[[0, 3, 6]]) == ["0", "8", "18"]  # eighths
    assert list(sprite_labels(latents, rotation)) == ["5"] * 3 + ["11"] * 2 + ["17"] * 3


def test_final_length_pairs_each_factor_with_the_baseline_on_the_same_search() -> None:
    rows = [{"dataset": "d", "seed": s, "factor": f, "test_accuracy": a}
            for s, f, a in [(0, 2.0, 0.90), (0, 1.0, 0.92), (1, 2.0, 0.80), (1, 1.0, 0.81), (2, 1.0, 0.70)]]
    rows += [{"dataset": "d", "seed": 0, "search": "again", "factor": 2.0, "average": a, "test_accuracy": acc}
             for a, acc in [(0.0, 0.94), (0.5, 0.95)]]  # seed 0 searched again: paired with its own baseline
    rows += [{"dataset": "d", "seed": 0, "search": "again", "factor": 2.0, "snapshots": 2, "test_accuracy": 0.91}]
    cells = paired_summary(rows, baseline=(2.0, 0.0, 1))["d"]
    assert cells["2x"]["diff_mean"] == 0.0 and cells["2x"]["n"] == 3
    assert cells["1x"]["n"] == 3 and cells["1x"]["mean"] == pytest.approx((0.92 + 0.81 + 0.70) / 3)
    assert cells["1x"]["diff_mean"] == pytest.approx(0.015)  # seed 2 has no baseline: left out of the pairs
    assert cells["1x"]["diff_std"] == pytest.approx(0.005)
    assert cells["2x, average 0.5"]["diff_mean"] == pytest.approx(0.01) and cells["2x, average 0.5"]["n"] == 1
    assert cells["2x, 2 snapshots"]["diff_mean"] == pytest.approx(-0.03) and cells["2x, 2 snapshots"]["n"] == 1


def test_final_length_scores_each_ensemble_against_the_same_final_fit_alone() -> None:
    rows = [{"dataset": "d", "test_accuracy": 0.90, "ensembles": {"2": 0.92, "searched": 0.89}},
            {"dataset": "d", "test_accuracy": 0.80, "ensembles": {"2": 0.81}},
            {"dataset": "d", "test_accuracy": 0.70}]  # from before the ensembles were scored: left out
    cells = ensemble_summary(rows)["d"]
    assert cells["2"]["n"] == 2 and cells["2"]["mean"] == pytest.approx(0.865)
    assert cells["2"]["diff_mean"] == pytest.approx(0.015) and cells["2"]["diff_std"] == pytest.approx(0.005)
    assert cells["searched"]["diff_mean"] == pytest.approx(-0.01) and cells["searched"]["n"] == 1


def test_final_length_scores_the_fitted_pair_against_the_whole_time_final_fit() -> None:
    rows = [{"dataset": "d", "test_accuracy": 0.90, "pair": {"pair": 0.93, "half_alone": 0.89, "half_epochs": 18}},
            {"dataset": "d", "test_accuracy": 0.80, "pair": {"pair": 0.80, "half_alone": 0.78, "half_epochs": 17}},
            {"dataset": "d", "test_accuracy": 0.70, "pair": {}}]  # one candidate only: nothing to pair
    cells = pair_summary(rows)["d"]
    assert set(cells) == {"pair", "half_alone"}  # epochs are not scores
    assert cells["pair"]["n"] == 2 and cells["pair"]["diff_mean"] == pytest.approx(0.015)
    half = cells["half_alone"]
    assert half["diff_mean"] == pytest.approx(-0.015) and half["diff_std"] == pytest.approx(0.005)


def graph(**shape) -> dict:
    return initial_graph((1, 16, 16), 4, **shape).to_dict()


def test_ranking_rules_score_each_rules_pick_against_the_best_candidate_on_test() -> None:
    spiky = {"id": 1, "val": 0.99, "loss": 0.1, "curve": [0.90, 0.99, 0.90, 0.90], "test": 0.90, "graph": graph()}
    steady = {"id": 2, "val": 0.95, "loss": 0.2, "curve": [0.90, 0.94, 0.95, 0.95], "test": 0.94,
              "graph": graph(width=32)}
    cells = regrets([{"n_val": 160, "candidates": [spiky, steady]}, {"n_val": 160, "candidates": [steady]}])
    assert cells["max"] == pytest.approx({"mean": -2.0, "std": 2.0, "n": 2, "differs_from_max": 0})
    assert cells["tail quarter"]["mean"] == pytest.approx(0.0)
    assert cells["last"]["differs_from_max"] == 1


def test_the_shifted_rule_ranks_by_validation_through_the_views_and_only_searches_that_recorded_them() -> None:
    """Two candidates one validation image apart plainly, the other way round through the views: the
    shifted rule follows the views, and its regret can be read against test through them too; a search
    saved without the views leaves the rule out instead of failing on it."""
    plain_best = {"id": 1, "val": 0.96, "val_views": 0.95, "loss": 0.1, "curve": [0.96], "graph": graph(),
                  "test": 0.93, "test_views": 0.94}
    views_best = {"id": 2, "val": 0.95, "val_views": 0.97, "loss": 0.2, "curve": [0.95], "graph": graph(width=32),
                  "test": 0.92, "test_views": 0.96}
    search = {"n_val": 160, "views": [1, False], "candidates": [plain_best, views_best]}
    assert RULES["max"](search)["id"] == 1 and RULES["max shifted"](search)["id"] == 2
    through = regrets([search], "test_views")
    assert through["max"]["mean"] == pytest.approx(-2.0) and through["max shifted"]["mean"] == pytest.approx(0.0)
    assert regrets([search])["max shifted"]["mean"] == pytest.approx(-1.0)
    assert "max shifted" not in regrets([{"n_val": 160, "candidates": [plain_best]}])


def test_the_final_fit_summary_pairs_the_two_picks_only_where_they_differ() -> None:
    """A search where the rules agree counts, but adds no pair; one saved without final fits does not count."""
    differ = {"final": {"max": {"test_views": 0.95}, "max shifted": {"test_views": 0.94}}}
    also = {"final": {"max": {"test_views": 0.90}, "max shifted": {"test_views": 0.93}}}
    cells = final_fit_summary([differ, also, {"final": {}}, {"candidates": []}])
    assert cells == pytest.approx({"searches": 3, "differ": 2, "mean": 1.0, "std": 2.0})


def test_the_gp_mean_rule_prefers_a_score_its_neighbours_share_to_a_lone_one_barely_above_it() -> None:
    """Two near-identical networks at 0.950 and a lone, different one at 0.952: on 100 validation images
    the lone score is as likely luck, so the smoothed scores rank the pair first; on a huge split the
    scores are exact and the smoothing gives them back."""
    pair = [{"id": i, "val": 0.95, "loss": 0.2, "curve": [0.95], "test": 0.94, "graph": graph(width=w)}
            for i, w in ((1, 64), (2, 72))]
    lone = {"id": 3, "val": 0.952, "loss": 0.2, "curve": [0.952], "test": 0.90, "graph": graph(width=16, n_blocks=1)}
    weak = {"id": 4, "val": 0.90, "loss": 0.2, "curve": [0.90], "test": 0.90, "graph": graph(width=256, n_blocks=5)}
    small = {"n_val": 100, "candidates": pair + [lone, weak]}
    assert RULES["max"](small)["id"] == 3 and RULES["gp mean"](small)["id"] in (1, 2)
    exact = {"n_val": 10 ** 7, "candidates": small["candidates"]}
    assert gp_means(exact) == pytest.approx([0.95, 0.95, 0.952, 0.90], abs=1e-4)
    assert RULES["gp mean"](exact)["id"] == 3


def test_tpe_trials_scale_the_seed_networks_width_and_size_their_epochs_for_their_batch():
    optuna = pytest.importorskip("optuna")  # the bench extra
    from automl.config import TrainConfig
    from bench.tpe import sample

    trial = optuna.trial.FixedTrial({"width_multiplier": 2.0, "dropout": 0.1, "learning_rate": 2e-3,
                                     "weight_decay": 1e-4, "batch_size": 32})
    graph, config = sample(trial, TrainConfig(max_epochs=9, patience=3), (1, 12, 12), 3, seed_width=24)
    assert {layer.params["filters"] for layer in graph.layers if layer.type == "conv"} == {48}
    assert (config.learning_rate, config.batch_size, config.max_epochs, config.patience) == (2e-3, 32, 0, 0)


def test_the_performance_summary_keeps_the_sections_other_benchmarks_wrote(tmp_path) -> None:
    """``python -m bench`` rewrites its own figures in ``latest.json``; the nightly and scale sections,
    written there by their own benchmarks, must survive it (a full run had dropped them)."""
    import json

    from bench.__main__ import write_merged

    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"nightly": {"table": 1}, "mode": "full", "throughput": {"old": 1}}))
    write_merged(path, {"mode": "full", "throughput": {"new": 2}})
    assert json.loads(path.read_text()) == {"nightly": {"table": 1}, "mode": "full", "throughput": {"new": 2}}
