"""How long, in what batches and at what input size a network trains, sized from the data where the
params leave it open (0 means "from the data").

Why: a fixed protocol (batch 128, 6 epochs) gives a candidate about 66 optimizer steps on 1,500 images,
so the seed network stops far below what it can reach and the search ranks under-trained networks.
Counting a candidate's training in optimizer steps (``train.candidate_steps``) makes it mean the same on
1,500 images as on 50,000; a smaller batch on small data gives more, noisier steps, which small data
needs. The numbers are the protocol the benchmark measured, not tuned per dataset.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from automl.arch.graph import Graph
from automl.arch.memory import estimate_memory_mb
from automl.config import FinalFitConfig, TrainConfig
from automl.data.preprocess import native_size

IMAGES_PER_STEP = 40  # the auto batch size is about n_train / 40 (a power of two) ...
MIN_BATCH, MAX_BATCH = 16, 128  # ... within these bounds
MIN_EPOCHS, MAX_EPOCHS = 6, 100
FINAL_FACTOR = 2  # the final fit (train + validation, no early stopping) trains this many times a candidate
SEED_MEMORY_SHARE = 0.25  # of a candidate's memory limit the seed network may take: room for its children


def auto_batch_size(n_train: int, max_batch: int = MAX_BATCH) -> int:
    """A power of two near ``n_train / IMAGES_PER_STEP``, within [MIN_BATCH, max_batch]."""
    target = max(n_train, 1) / IMAGES_PER_STEP
    return int(min(max_batch, max(MIN_BATCH, 2 ** round(math.log2(max(target, 1))))))


def memory_batch_cap(seed: Graph, limit_mb: float) -> int:
    """The largest auto batch size (a power of two, at least MIN_BATCH) at which ``seed`` trains in
    ``SEED_MEMORY_SHARE`` of ``limit_mb``. Why: activations grow with the batch times the input's pixels;
    at 128 px the seed network at batch 128 needs about 2.4 GB, and the children the search grows from
    it more, so large inputs train in smaller batches instead of exhausting the machine."""
    batch = MAX_BATCH
    while batch > MIN_BATCH and estimate_memory_mb(seed, batch) > SEED_MEMORY_SHARE * limit_mb:
        batch //= 2
    return batch


def resolve(config: TrainConfig, n_train: int, max_batch: int = MAX_BATCH) -> TrainConfig:
    """``config`` with every 0 (batch size, epochs, patience) replaced by its value for ``n_train``
    training images (an auto batch size at most ``max_batch``); explicit values are kept as the user
    set them.

    Sized patience is the epochs themselves: a candidate trains its whole step budget. Why: the learning
    rate anneals over those epochs (cosine), and on small data validation accuracy plateaus at the high
    rate and rises as it falls; a patience of a quarter of the epochs cut candidates in that plateau. On
    dSprites at 64 px in 300 s the seed network stopped at 0.56 validation accuracy after 9 of 19 epochs,
    while the children that ran their 18 reached 0.77-0.94."""
    batch = config.batch_size or auto_batch_size(n_train, max_batch)
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    epochs = config.max_epochs or min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(config.candidate_steps / steps_per_epoch)))
    patience = config.patience or epochs  # sized: no early stop
    return dataclasses.replace(config, batch_size=batch, max_epochs=epochs, patience=patience)


def tuned(config: TrainConfig, graph: Graph) -> TrainConfig:
    """``config`` with each training hyperparameter ``graph`` tunes (``Graph.tuning``, set by the
    search's tuning morphs) multiplied by two to the power of its step."""
    return dataclasses.replace(config, **{name: getattr(config, name) * 2.0 ** step
                                          for name, step in graph.tuning.items() if step})


def final_epochs(config: FinalFitConfig, resolved: TrainConfig) -> int:
    """``final_fit.epochs``, or ``FINAL_FACTOR`` times a candidate's epochs when it is 0."""
    return config.epochs or FINAL_FACTOR * resolved.max_epochs


# The input size when ``preprocess.image_size`` is 0. Images up to SMALL_IMAGE px keep their size: a
# smaller CNN input buys nothing there. Larger ones are reduced to what lets a candidate (its epochs
# over the training set) train in about CANDIDATE_SECONDS at PIXEL_RATE image-pixels per second (the
# seed network on 2 CPU cores in float32 measured 0.9-1.4 M at 32-64 px), never below SMALL_IMAGE: at 64
# px a candidate costs five times what it does at 28, and dSprites at 64 px gave the search 3
# under-trained candidates in 225 s (test 0.85). The rule keeps float32's rate where training runs in
# bf16 (2-3x faster) on purpose: the speed buys more candidates, not larger inputs. On the dSprites
# eighths at 300 s, 55 px instead of 39 lost 0.7 points with 400-step candidates and with 800 alike.
# CANDIDATE_SECONDS was 40 with 800-step candidates: halved with them, it keeps the sizes about as they were.
# Budget-independent on purpose: a resumed search must see the same tensors.
SMALL_IMAGE = 28
CANDIDATE_SECONDS = 20.0
PIXEL_RATE = 1.0e6


def auto_image_size(native: int, n_train: int, config: TrainConfig) -> int:
    """The side to resize images of side ``native`` to, for ``n_train`` images trained per ``config``."""
    if native <= SMALL_IMAGE:
        return max(native, 4)
    images_per_candidate = resolve(config, n_train).max_epochs * max(n_train, 1)
    affordable = math.isqrt(int(PIXEL_RATE * CANDIDATE_SECONDS / images_per_candidate))
    return min(native, max(SMALL_IMAGE, affordable))


def image_size_for(size: int, images: list[np.ndarray], config: TrainConfig) -> int:
    """``preprocess.image_size``, or when it is 0 the size for these training ``images`` and ``config``."""
    return size or auto_image_size(native_size(images), len(images), config)
