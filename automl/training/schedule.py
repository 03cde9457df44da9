"""The learning-rate schedule of one training run, and when it must stop to end by its deadline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from automl.config import TrainConfig


class LRSchedule:
    """Cosine annealing of the learning rate to whichever end comes first: ``max_epochs`` or the
    deadline. Each candidate thus ends at a low learning rate (its validation accuracy is that of a
    settled network, and its children start from settled weights: warm restarts along a lineage), and
    the candidate cut at the deadline, or the one trained until it, ends annealed instead of mid-step."""

    def __init__(self, config: TrainConfig, max_epochs: int | None, deadline: float | None) -> None:
        self.base, self.cosine, self.max_epochs = config.learning_rate, config.lr_schedule == "cosine", max_epochs
        self.start, self.deadline = time.time(), deadline

    def for_epoch(self, epoch: int) -> Callable[[float], float]:
        """Learning rate as a function of the fraction of this epoch done."""
        return lambda done: self.at(epoch - 1 + done)

    def progress(self, epochs_done: float) -> float:
        """How far the run is to its end, 0 to 1: by epochs, or by the clock once the clock is further
        by more than ``CLOCK_SLACK`` (the deadline will cut the epochs). Why the slack: at the start of
        every run the clock is a few milliseconds ahead of the epochs, and a learning rate that took it
        differed in its sixth digit from one run to the next; the runs then parted, so one seed's
        search was not repeatable. Within the slack, a run the deadline does not cut is the same run."""
        by_epochs = epochs_done / self.max_epochs if self.max_epochs else 0.0  # None: by the deadline alone
        if self.deadline is not None and self.deadline > self.start:
            by_time = (time.time() - self.start) / (self.deadline - self.start)
            if by_time > by_epochs + CLOCK_SLACK:
                return min(by_time, 1.0)
        return min(by_epochs, 1.0)

    def at(self, epochs_done: float) -> float:
        if not self.cosine:
            return self.base
        cosine = 0.5 * (1 + math.cos(math.pi * self.progress(epochs_done)))
        return self.base * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * cosine)


MIN_LR_FRACTION = 0.01  # the last steps still learn a little
CLOCK_SLACK = 0.05  # of a run: how far the clock may be ahead of the epochs before it sets the schedule


SCORE_SHARE = 0.5  # seconds to score an image per second to train on it, until scoring is measured (float32
# training of the seed network: 0.38 at 64-128 px, 0.56 at 28; training in bf16 is 2-3x faster, scoring is not)


class Cutoff:
    """When training must stop so that the scoring that follows it (``after`` images: the validation
    pass, the final fit's guard) still ends by ``deadline``. Why: a candidate cut exactly at the deadline
    was then validated past it; at 128 px the 5,000 validation images took the search to 177 s of a
    120 s budget. The scoring time per image is what a scoring pass was measured to take (``scored``, or
    ``score_per_image`` from the caller); before any, estimated from the training speed measured so far.
    Why measured: scoring runs in float32 while training runs in bf16, and a final fit of a large network
    estimated its guard's two passes at a third of their time and ended 7-16 s past its budget."""

    def __init__(self, deadline: float | None, after: int, score_per_image: float = 0.0) -> None:
        self.deadline, self.after, self.per_image, self.score_per_image = deadline, after, 0.0, score_per_image

    def observe(self, seconds: float, images: int) -> None:
        """Training took ``seconds`` for ``images`` (the epoch so far)."""
        if images:
            self.per_image = seconds / images

    def scored(self, seconds: float, images: int) -> None:
        """Scoring ``images`` took ``seconds``."""
        if images:
            self.score_per_image = seconds / images

    @property
    def at(self) -> float | None:
        """The time training stops (a ``time.time()`` value); None: no deadline."""
        if self.deadline is None:
            return None
        return self.deadline - self.after * (self.score_per_image or self.per_image * SCORE_SHARE)

    def passed(self) -> bool:
        at = self.at
        return at is not None and time.time() >= at
