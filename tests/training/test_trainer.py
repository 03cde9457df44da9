import dataclasses
import time

import numpy as np
import pytest
import torch

from automl.arch.graph import initial_graph
from automl.config import TrainConfig
from automl.errors import ConfigError
from automl.training.augment import augment
from automl.training.device import cpu_has_bf16, place
from automl.training.schedule import MIN_LR_FRACTION, SCORE_SHARE, Cutoff, LRSchedule
from automl.training.trainer import TensorData, train_candidate


def bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a bright vertical bar; class 1: a horizontal one (positions vary)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.1, (n, 1, 10, 10)).astype(np.float32)
    y = np.arange(n) % 2
    for i, pos in enumerate(rng.integers(2, 8, n)):
        if y[i] == 0:
            x[i, 0, :, pos] += 2
        else:
            x[i, 0, pos, :] += 2
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.fixture(scope="module")
def bar_data() -> TensorData:
    return TensorData(*bars(200, 0), *bars(60, 1))


CONFIG = TrainConfig(max_epochs=6, patience=3, batch_size=32, learning_rate=3e-3, threads=2)


def test_learns_a_simple_task_and_keeps_the_best_state(bar_data):
    result = train_candidate(initial_graph((1, 10, 10), 2, width=16), None, bar_data, CONFIG, seed=1)
    assert not result.failed, result.error
    assert result.val_accuracy >= 0.9
    assert len(result.history) == result.epochs and result.best_epoch <= result.epochs
    assert max(h["val_accuracy"] for h in result.history) == result.val_accuracy
    assert result.state is not None and "ops.L3.weight" in result.state


def test_same_seed_same_result(bar_data):
    graph = initial_graph((1, 10, 10), 2, width=8)
    cfg = TrainConfig(max_epochs=2, batch_size=32, threads=1)
    a, b = (train_candidate(graph, None, bar_data, cfg, seed=5) for _ in range(2))
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_deadline_cuts_training(bar_data):
    start = time.time()
    result = train_candidate(initial_graph((1, 10, 10), 2), None, bar_data,
                             TrainConfig(max_epochs=1000, patience=1000, batch_size=8, threads=2),
                             deadline=start + 1.0)
    assert result.stopped == "deadline" and result.epochs < 1000
    assert result.state is not None


def test_training_stops_early_enough_for_the_scoring_that_follows_it(bar_data):
    cutoff = Cutoff(deadline=1000.0, after=500)
    assert cutoff.at == 1000.0  # speed not known yet
    cutoff.observe(2.0, 100)  # 20 ms an image to train: 500 images to score take 500 * 0.02 * SCORE_SHARE s
    assert cutoff.at == pytest.approx(1000.0 - 500 * 0.02 * SCORE_SHARE) and cutoff.passed()
    assert Cutoff(None, 500).at is None and not Cutoff(None, 500).passed()
    cutoff.scored(1.0, 100)  # scoring measured (10 ms an image): that, not the estimate, sets the cut
    assert cutoff.at == pytest.approx(1000.0 - 500 * 0.01)
    given = Cutoff(deadline=1000.0, after=500, score_per_image=0.004)  # measured by the caller
    given.observe(2.0, 100)
    assert given.at == pytest.approx(1000.0 - 500 * 0.004)
    # an hour to go, but scoring a billion images after training would not end by then: cut at once
    result = train_candidate(initial_graph((1, 10, 10), 2), None, bar_data,
                             TrainConfig(max_epochs=1000, patience=1000, batch_size=8, threads=2),
                             deadline=time.time() + 3600, scored_after=10**9)
    assert result.stopped == "deadline" and result.epochs == 1 and result.state is not None


def test_a_diverging_candidate_is_a_failed_result_not_an_exception(bar_data):
    result = train_candidate(initial_graph((1, 10, 10), 2), None, bar_data,
                             TrainConfig(max_epochs=3, learning_rate=1e30, threads=2))
    assert result.failed and "loss became" in result.error and not result.out_of_memory


def test_learning_rate_anneals_to_whichever_end_comes_first():
    cfg = TrainConfig(learning_rate=0.1)
    by_epochs = LRSchedule(cfg, max_epochs=4, deadline=time.time() + 3600)
    assert by_epochs.at(0) == pytest.approx(0.1, rel=1e-3)
    assert by_epochs.at(2) == pytest.approx(0.1 * (1 + MIN_LR_FRACTION) / 2, rel=1e-3)
    assert by_epochs.at(4) == pytest.approx(0.1 * MIN_LR_FRACTION)
    by_deadline = LRSchedule(cfg, max_epochs=None, deadline=time.time() + 0.2)
    time.sleep(0.25)
    assert by_deadline.at(1) == pytest.approx(0.1 * MIN_LR_FRACTION)
    near = LRSchedule(cfg, max_epochs=4, deadline=time.time() + 10.0)
    time.sleep(0.05)  # the clock a little ahead of the epochs: the rate is the epochs' own, run after run
    assert near.at(0) == 0.1 and near.at(2) == by_epochs.at(2)
    constant = LRSchedule(TrainConfig(learning_rate=0.1, lr_schedule="constant"), max_epochs=4, deadline=None)
    assert constant.at(0) == constant.at(4) == 0.1


def test_validation_loss_is_recorded_for_the_best_epoch(bar_data):
    result = train_candidate(initial_graph((1, 10, 10), 2, width=8), None, bar_data,
                             TrainConfig(max_epochs=2, batch_size=32, threads=1))
    best = result.history[result.best_epoch - 1]
    assert result.val_loss == best["val_loss"] > 0


def test_cpu_placement_trains_in_bf16_only_where_the_cpu_computes_it(bar_data):
    assert place("cpu").device.type == "cpu"
    assert place("cpu").amp_dtype == (torch.bfloat16 if cpu_has_bf16() else None)
    assert place("cpu", amp=False).amp_dtype is None
    config = TrainConfig(max_epochs=2, patience=2, batch_size=16, device="cpu")
    result = train_candidate(initial_graph((1, 10, 10), 2), None, bar_data, config, seed=0)
    # weights trained in the channels_last layout are kept in the default one, in float32
    assert all(v.is_contiguous() and (v.dtype == torch.float32 or "num_batches" in k) for k, v in result.state.items())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_but_absent_is_a_config_error_not_a_failed_candidate():
    assert place("auto").device.type == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        place("cuda")
    with pytest.raises(ConfigError, match="train.device"):
        train_candidate(initial_graph((1, 10, 10), 2), None, TensorData(*bars(8, 0)),
                        TrainConfig(max_epochs=1, device="cuda"))


def test_until_the_deadline_ignores_epochs_and_patience(bar_data):
    start = time.time()
    result = train_candidate(initial_graph((1, 10, 10), 2, width=8), None, bar_data,
                             TrainConfig(max_epochs=1, patience=1, batch_size=32, threads=1),
                             deadline=start + 3.0, until_deadline=True)
    assert result.stopped == "deadline" and result.epochs > 1


def test_inherited_weights_load_strictly(bar_data):
    graph = initial_graph((1, 10, 10), 2, width=8)
    other = train_candidate(initial_graph((1, 10, 10), 2, width=16), None, bar_data,
                            TrainConfig(max_epochs=1, threads=1))
    result = train_candidate(graph, other.state, bar_data, TrainConfig(max_epochs=1, threads=1))
    assert result.failed and "size mismatch" in result.error


def test_augment_shifts_within_padding_and_flips():
    x = torch.zeros(64, 1, 5, 5)
    x[:, :, 2, 2] = 1.0
    g = torch.Generator().manual_seed(0)
    out = augment(x, padding=1, flip=False, generator=g)
    assert out.shape == x.shape and torch.all(out.sum(dim=(1, 2, 3)) == 1)
    ys, xs = (out[:, 0] == 1).nonzero()[:, 1], (out[:, 0] == 1).nonzero()[:, 2]
    assert set(ys.tolist()) <= {1, 2, 3} and len(set(xs.tolist())) > 1
    ramp = torch.arange(5.0).expand(8, 1, 5, 5)
    flipped = augment(ramp, padding=0, flip=True, generator=g)
    assert any(torch.equal(f, ramp[0].flip(2)) for f in flipped) and any(torch.equal(f, ramp[0]) for f in flipped)


def test_score_is_the_best_epoch_or_the_mean_of_the_last_epochs(bar_data):
    """``score_epochs`` n: the mean of the last n epochs' validation accuracy ranks the candidate; the
    weights kept are still the best epoch's."""
    graph = initial_graph((1, 10, 10), 2, width=8)
    config = TrainConfig(max_epochs=4, patience=4, batch_size=32, threads=1)
    best = train_candidate(graph, None, bar_data, config, seed=3)
    tail = train_candidate(graph, None, bar_data, dataclasses.replace(config, score_epochs=3), seed=3)
    assert best.score == best.val_accuracy
    curve = [h["val_accuracy"] for h in tail.history]
    assert tail.score == pytest.approx(sum(curve[-3:]) / 3)
    assert tail.val_accuracy == best.val_accuracy == max(curve) and tail.best_epoch == best.best_epoch


def test_label_smoothing_softens_the_targets_it_trains_on(bar_data):
    """Two classes with 0.4 smoothed: targets (0.8, 0.2), whose entropy (0.50) bounds the training loss
    from below; hard labels fit the bars far below that, and the smoothed network still separates them."""
    graph, floor = initial_graph((1, 10, 10), 2, width=16), -(0.8 * np.log(0.8) + 0.2 * np.log(0.2))
    hard = train_candidate(graph, None, bar_data, CONFIG, seed=1)
    soft = train_candidate(graph, None, bar_data, dataclasses.replace(CONFIG, label_smoothing=0.4), seed=1)
    assert hard.history[-1]["train_loss"] < floor - 0.1
    assert min(h["train_loss"] for h in soft.history) >= floor - 1e-3
    assert soft.val_accuracy >= 0.9
