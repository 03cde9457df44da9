"""The training protocol sized from the data: explicit params are kept, zeros are filled in."""

import dataclasses

import numpy as np
import pytest

from automl.arch.graph import initial_graph
from automl.arch.memory import estimate_memory_mb
from automl.arch.morph import apply_morph
from automl.config import FinalFitConfig, TrainConfig
from automl.training.protocol import (
    CANDIDATE_SECONDS,
    MAX_BATCH,
    MIN_BATCH,
    PIXEL_RATE,
    SEED_MEMORY_SHARE,
    auto_batch_size,
    auto_image_size,
    final_epochs,
    image_size_for,
    memory_batch_cap,
    resolve,
    tuned,
)


@pytest.mark.parametrize("n,batch", [(10, 16), (1_350, 32), (3_500, 64), (5_000, 128), (60_000, 128)])
def test_the_batch_grows_with_the_training_set_within_bounds(n, batch):
    assert auto_batch_size(n) == batch


def test_a_candidate_gets_about_candidate_steps_steps_whatever_the_data_size():
    small, large = resolve(TrainConfig(), 1_350), resolve(TrainConfig(), 20_000)
    target = TrainConfig().candidate_steps
    for n, cfg in ((1_350, small), (20_000, large)):
        steps = cfg.max_epochs * -(-n // cfg.batch_size)
        assert cfg.max_epochs == 6 or target <= steps < target + -(-n // cfg.batch_size)  # at least 6 epochs
    assert small.max_epochs > large.max_epochs and small.patience == small.max_epochs  # no early stop


def test_explicit_values_are_kept_and_resolving_twice_changes_nothing():
    explicit = TrainConfig(batch_size=50, max_epochs=3, patience=1)
    assert resolve(explicit, 1_000) == explicit
    once = resolve(TrainConfig(), 2_000)
    assert resolve(once, 2_000) == once


def test_large_inputs_train_in_batches_the_seed_network_fits_in_a_share_of_the_memory_limit():
    small, large = initial_graph((1, 28, 28), 10), initial_graph((3, 128, 128), 10)
    assert memory_batch_cap(small, 6_000) == MAX_BATCH
    cap = memory_batch_cap(large, 6_000)
    assert MIN_BATCH <= cap < MAX_BATCH and estimate_memory_mb(large, cap) <= SEED_MEMORY_SHARE * 6_000
    assert estimate_memory_mb(large, 2 * cap) > SEED_MEMORY_SHARE * 6_000
    assert memory_batch_cap(large, 1.0) == MIN_BATCH  # never below it: the memory check refuses instead
    assert resolve(TrainConfig(), 50_000, cap).batch_size == cap
    assert resolve(TrainConfig(batch_size=128), 50_000, cap).batch_size == 128  # the user's choice is kept


def test_the_final_fit_trains_twice_a_candidate_unless_told():
    cfg = resolve(TrainConfig(), 1_350)
    assert final_epochs(FinalFitConfig(), cfg) == 2 * cfg.max_epochs
    assert final_epochs(FinalFitConfig(epochs=7), cfg) == 7


@pytest.mark.parametrize("native", [8, 17, 28])
def test_images_up_to_28_px_keep_their_size(native):
    assert auto_image_size(native, 1_000, TrainConfig()) == native


def test_large_images_shrink_to_what_a_candidate_can_afford_never_below_28_nor_above_their_own_size():
    """1,440 images of 64 px (dSprites): 9 epochs, so 12,960 images a candidate; 39 px makes that about
    20 s at the measured pixel rate. Ten times the images: 28. A hundred images: their own size caps it."""
    size = auto_image_size(64, 1_440, TrainConfig())
    assert size == 39 and 12_960 * size**2 / PIXEL_RATE <= CANDIDATE_SECONDS < 12_960 * (size + 1) ** 2 / PIXEL_RATE
    assert auto_image_size(64, 14_400, TrainConfig()) == 28
    assert auto_image_size(40, 100, TrainConfig()) == 40
    assert auto_image_size(300, 1_440, TrainConfig(max_epochs=6)) > size  # fewer epochs: more pixels each


def test_an_explicit_image_size_is_kept_and_zero_reads_the_images_shorter_sides():
    images = [np.zeros((64, 80), np.uint8)] * 3 + [np.zeros((20, 20, 3), np.uint8)] * 2  # median shorter side 64
    assert image_size_for(16, images, TrainConfig()) == 16
    assert image_size_for(0, images, TrainConfig()) == 64  # 5 images: a candidate is cheap at full size


def test_a_graphs_tuning_steps_scale_its_learning_rate_and_weight_decay_by_powers_of_two():
    g = initial_graph((1, 12, 12), 3)
    g = apply_morph(apply_morph(g, {"op": "learning_rate", "step": 1}), {"op": "weight_decay", "step": -1})
    config = TrainConfig(learning_rate=1e-3, weight_decay=1e-4)
    assert tuned(config, g) == dataclasses.replace(config, learning_rate=2e-3, weight_decay=5e-5)
    assert tuned(config, initial_graph((1, 12, 12), 3)) == config
