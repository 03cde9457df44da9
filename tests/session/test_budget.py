"""The final fit's expected seconds, from the best candidate's measured epochs."""

import pytest

from automl.search.records import CandidateRecord, Reasoning, Status
from automl.session.budget import MARGIN, UNMEASURED_SHARE, final_fit_seconds, reserve_seconds


def record(epoch_seconds, score):
    history = tuple({"epoch": i + 1, "seconds": s} for i, s in enumerate(epoch_seconds))
    return CandidateRecord(1, None, None, "conv", 10, Reasoning(), Status.COMPLETE, val_accuracy=0.9,
                           history=history, timing={"score": score})


def test_scales_the_median_epoch_less_its_validation_pass_to_the_final_fits_epochs_and_images():
    best = record([9.0, 2.5, 2.5, 3.0], score=0.5)  # median 2.75: 2.25 s to train 900 images
    seconds = final_fit_seconds(best, final_epochs=4, n_train=900, n_val=100, guard_images=200)
    train = 4 * 1000 * 2.25 / 900  # 4 epochs over train + validation
    guard = 2 * 200 * 0.5 / 100  # the searched and the trained weights, each over 200 images
    assert seconds == pytest.approx(MARGIN * (train + guard))
    assert final_fit_seconds(best, 4, 900, 100, 200, networks=2) == pytest.approx(2 * seconds)


def test_a_share_of_the_budget_is_kept_until_a_candidate_measured_the_final_fit():
    assert final_fit_seconds(None, 4, 900, 100, 200) is None
    assert final_fit_seconds(record([], 0.5), 4, 900, 100, 200) is None
    assert reserve_seconds(None, 300.0) == UNMEASURED_SHARE * 300.0 and reserve_seconds(12.5, 300.0) == 12.5
