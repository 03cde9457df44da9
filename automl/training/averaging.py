"""Weight averaging over the end of a training run (stochastic weight averaging of its tail).

Why: the final fit trains on every labelled image with nothing held out to tell its last epoch from a
slightly better one, and on small data its last weights depend on the last few hundred noisy batches.
The mean of the weights at the ends of its last epochs sits nearer the middle of the region those epochs
wander in, which generalizes at least as well (Izmailov et al. 2018, "Averaging weights leads to wider
optima"). Batch-norm statistics are not averaged: they are measured again for the averaged weights, as
those weights see the training images (one forward pass).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from automl.training.device import Placement


class TailAverage:
    """The running mean of a model's weights at the ends of the epochs in the last ``share`` of its
    schedule (0: none). ``observe`` after each epoch; ``state`` at the end."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.averaged: AveragedModel | None = None

    @property
    def count(self) -> int:
        """Epoch ends averaged so far."""
        return 0 if self.averaged is None else int(self.averaged.n_averaged)

    def observe(self, model: nn.Module, progress: float) -> None:
        """Add ``model``'s weights when the run is ``progress`` (0 to 1) of the way to its end and in the tail."""
        if self.share <= 0 or progress < 1 - self.share:
            return
        if self.averaged is None:
            self.averaged = AveragedModel(model)
        self.averaged.update_parameters(model)

    def state(self, x: torch.Tensor, batch_size: int, placement: Placement) -> dict[str, torch.Tensor] | None:
        """The averaged weights (on the CPU), batch-norm statistics measured on ``x``; None with fewer than
        two epoch ends averaged (the last weights are then the average)."""
        if self.averaged is None or self.count < 2:
            return None
        module = self.averaged.module
        update_bn(_batches(x, batch_size, placement), module)
        return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _batches(x: torch.Tensor, batch_size: int, placement: Placement) -> Iterator[torch.Tensor]:
    """Training-sized batches of ``x``; a last batch of one image is left out (batch norm needs two)."""
    for i in range(0, len(x), batch_size):
        if len(x) - i >= 2 or i == 0:
            yield placement.batch(x[i : i + batch_size].to(placement.device))
