"""The training protocol sized from the data: explicit params are kept, zeros are filled in."""

import pytest

from automl.config import FinalFitConfig, TrainConfig
from automl.training.protocol import auto_batch_size, final_epochs, resolve


@pytest.mark.parametrize("n,batch", [(10, 16), (1_350, 32), (3_500, 64), (5_000, 128), (60_000, 128)])
def test_the_batch_grows_with_the_training_set_within_bounds(n, batch):
    assert auto_batch_size(n) == batch


def test_a_candidate_gets_about_candidate_steps_steps_whatever_the_data_size():
    small, large = resolve(TrainConfig(), 1_350), resolve(TrainConfig(), 20_000)
    for n, cfg in ((1_350, small), (20_000, large)):
        steps = cfg.max_epochs * -(-n // cfg.batch_size)
        assert cfg.max_epochs == 6 or 800 <= steps < 800 + -(-n // cfg.batch_size)  # at least 6 epochs
    assert small.max_epochs > large.max_epochs and small.patience == max(2, small.max_epochs // 4)


def test_explicit_values_are_kept_and_resolving_twice_changes_nothing():
    explicit = TrainConfig(batch_size=50, max_epochs=3, patience=1)
    assert resolve(explicit, 1_000) == explicit
    once = resolve(TrainConfig(), 2_000)
    assert resolve(once, 2_000) == once


def test_the_final_fit_trains_twice_a_candidate_unless_told():
    cfg = resolve(TrainConfig(), 1_350)
    assert final_epochs(FinalFitConfig(), cfg) == 2 * cfg.max_epochs
    assert final_epochs(FinalFitConfig(epochs=7), cfg) == 7
