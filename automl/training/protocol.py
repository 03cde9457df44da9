"""How long and in what batches a network trains, sized from the data where the params leave it open
(0 means "from the data").

Why: a fixed protocol (batch 128, 6 epochs) gives a candidate about 66 optimizer steps on 1,500 images,
so the seed network stops far below what it can reach and the search ranks under-trained networks.
Counting a candidate's training in optimizer steps (``train.candidate_steps``) makes it mean the same on
1,500 images as on 50,000; a smaller batch on small data gives more, noisier steps, which small data
needs. The numbers are the protocol the benchmark measured, not tuned per dataset.
"""

from __future__ import annotations

import dataclasses
import math

from automl.config import FinalFitConfig, TrainConfig

IMAGES_PER_STEP = 40  # the auto batch size is about n_train / 40 (a power of two) ...
MIN_BATCH, MAX_BATCH = 16, 128  # ... within these bounds
MIN_EPOCHS, MAX_EPOCHS = 6, 100
FINAL_FACTOR = 2  # the final fit (train + validation, no early stopping) trains this many times a candidate


def auto_batch_size(n_train: int) -> int:
    """A power of two near ``n_train / IMAGES_PER_STEP``, within [MIN_BATCH, MAX_BATCH]."""
    target = max(n_train, 1) / IMAGES_PER_STEP
    return int(min(MAX_BATCH, max(MIN_BATCH, 2 ** round(math.log2(max(target, 1))))))


def resolve(config: TrainConfig, n_train: int) -> TrainConfig:
    """``config`` with every 0 (batch size, epochs, patience) replaced by its value for ``n_train``
    training images; explicit values are kept as the user set them."""
    batch = config.batch_size or auto_batch_size(n_train)
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    epochs = config.max_epochs or min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(config.candidate_steps / steps_per_epoch)))
    patience = config.patience or max(2, epochs // 4)
    return dataclasses.replace(config, batch_size=batch, max_epochs=epochs, patience=patience)


def final_epochs(config: FinalFitConfig, resolved: TrainConfig) -> int:
    """``final_fit.epochs``, or ``FINAL_FACTOR`` times a candidate's epochs when it is 0."""
    return config.epochs or FINAL_FACTOR * resolved.max_epochs
