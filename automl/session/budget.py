"""One time budget for the search and its final fit (``final_fit.in_search_budget``).

Why: with the final fit's share of a budget fixed (a quarter in the benchmark), the 600-s runs on the
rotation eighths ended after 478-535 s, because the final fit ran all its epochs in 30-85 s of its 150.
The best candidate's own measured epochs say how long its final fit will take, so the search can end
that much before the budget's end, and the final fit gets what the search left: a user's one time
budget then holds the whole run, and what a fixed share would have left idle goes to the search.
"""

from __future__ import annotations

import statistics

from automl.search.records import CandidateRecord

MARGIN = 1.2  # the estimate times this: a final fit cut short anneals early, one with time over leaves it idle
UNMEASURED_SHARE = 0.25  # of the budget kept before any candidate trained (the benchmark's fixed share): what
# the seed network may train to (``search.root_share``, the ``initial`` strategy's whole budget) is the rest


def reserve_seconds(estimate: float | None, time_limit: float) -> float:
    """What the search keeps free at its budget's end: the best's expected final fit (``estimate``),
    or ``UNMEASURED_SHARE`` of ``time_limit`` while no candidate has measured it (None)."""
    return UNMEASURED_SHARE * time_limit if estimate is None else estimate


def final_fit_seconds(best: CandidateRecord | None, final_epochs: int, n_train: int, n_val: int,
                      guard_images: int, networks: int = 1) -> float | None:
    """Expected seconds of the final fit of ``best``'s network (None before any candidate trained):
    ``final_epochs`` epochs over the ``n_train`` + ``n_val`` images at its median measured rate
    (each epoch's seconds less its validation pass), its guard's two scoring passes over
    ``guard_images`` at its validation rate, and that for each of ``networks`` final-fitted networks
    (``final_fit.fitted_members``, each fitted alike)."""
    seconds = [h["seconds"] for h in best.history if h.get("seconds")] if best else []
    if not seconds or n_train <= 0:
        return None
    score = best.timing.get("score", 0.0)
    per_image = max(0.0, statistics.median(seconds) - score) / n_train
    guard = 2 * guard_images * score / max(n_val, 1)
    return MARGIN * networks * (final_epochs * (n_train + n_val) * per_image + guard)
