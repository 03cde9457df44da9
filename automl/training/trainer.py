"""Training one candidate: ``train_candidate(graph, weights, data, config) -> TrainResult``.

Separate from searching so that the same function runs in-process (the Python API) or as a Prefect
mapped task (the flow). Data is already decoded, resized and normalized (done once per run);
augmentation works on whole batches of tensors, so an epoch has no per-sample Python work.
A failing candidate returns a result with its ``error`` instead of raising; the caller records it.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.arch.builder import build_module
from automl.arch.graph import Graph
from automl.config import TrainConfig
from automl.data.pixels import Pixels
from automl.errors import describe_error, stops_the_run
from automl.training.augment import augment
from automl.training.averaging import TailAverage
from automl.training.device import Placement, image_layout, place
from automl.training.protocol import resolve, tuned
from automl.training.schedule import Cutoff, LRSchedule

Inputs = torch.Tensor | Pixels  # normalized inputs, or uint8 pixels normalized as batches are read
EVAL_PIXELS = 512 * 28 * 28  # pixels per scoring batch (eval_batch_size)


@dataclass(frozen=True)
class TensorData:
    """Inputs (N, C, S, S) and class indices; validation may be absent (final fit)."""

    x_train: Inputs
    y_train: torch.Tensor
    x_val: Inputs | None = None
    y_val: torch.Tensor | None = None


@dataclass(frozen=True)
class EpochInfo:
    epoch: int
    max_epochs: int | None  # None: trained until the deadline
    train_loss: float
    val_accuracy: float | None
    val_loss: float | None
    seconds: float


@dataclass
class TrainResult:
    """What training produced: the best epoch's metrics and weights, or ``error`` (then it failed)."""

    val_accuracy: float | None = None
    val_loss: float | None = None  # at the best epoch: breaks ties of accuracy on small validation sets
    score: float | None = None  # what ranks it: val_accuracy, or a tail mean (``TrainConfig.score_epochs``)
    inherited_val_accuracy: float | None = None  # before training, with the weights it started from
    best_epoch: int = 0
    epochs: int = 0
    stopped: str = ""  # "patience" | "max_epochs" | "deadline" | "error"
    train_seconds: float = 0.0
    score_seconds: float = 0.0  # the last validation pass: what scoring one more candidate would cost
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    out_of_memory: bool = False  # set where the error is caught; the searcher then proposes smaller
    averaged_epochs: int = 0  # epoch ends whose weights ``state`` averages (``average``); 0: the last weights
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def fields(self) -> dict[str, Any]:
        """Everything but the weights and the clock, by the names the candidate record uses."""
        left_out = ("state", "score_seconds", "averaged_epochs")  # the last: final fits only
        return {**{k: v for k, v in self.__dict__.items() if k not in left_out},
                "history": tuple(self.history)}


EpochCallback = Callable[[EpochInfo], None]


def failed_result(exc: BaseException) -> TrainResult:
    """A failed candidate's result: the error's type, message and where it was raised."""
    return TrainResult(stopped="error", error=describe_error(exc), out_of_memory=is_out_of_memory(exc))


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises ``torch.OutOfMemoryError``; the CPU allocator a RuntimeError saying so."""
    text = str(exc).lower()
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text \
        or "can't allocate memory" in text


def set_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads (0: one per core). Process-wide: the driver calls it once when
    a session opens, never per candidate."""
    want = threads if threads > 0 else (os.cpu_count() or 1)
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


def accuracy(model: nn.Module, x: Inputs, y: torch.Tensor, batch_size: int = 0) -> float:
    return scores(model, x, y, batch_size)[0]


def scores(model: nn.Module, x: Inputs, y: torch.Tensor, batch_size: int = 0) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``(x, y)``."""
    logits = predict_logits(model, x, batch_size)
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def class_accuracies(y_true: np.ndarray, predicted: np.ndarray, classes: Sequence[Any]) -> dict[str, float]:
    """Accuracy on each class present in ``y_true`` (class indices), keyed by the class's name."""
    return {str(c): float((predicted[y_true == i] == i).mean()) for i, c in enumerate(classes) if (y_true == i).any()}


def predict_logits(model: nn.Module, x: Inputs, batch_size: int = 0) -> torch.Tensor:
    """Float32 logits on the CPU, computed on whatever device the model is on; ``batch_size`` 0 sizes
    the batches from the images (``eval_batch_size``)."""
    batch_size = batch_size or eval_batch_size(x.shape)
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(image_layout(x[i : i + batch_size].to(device))).float().cpu()
                          for i in range(0, len(x), batch_size)])


def eval_batch_size(shape: Sequence[int]) -> int:
    """Images per scoring batch: as many pixels as 512 images of 28x28, so the activations a forward pass
    holds stay the same size at 128 px (32 images) as at 28 px (512), whatever the dataset's size."""
    return max(1, EVAL_PIXELS // (shape[-1] * shape[-2]))


def train_candidate(
    graph: Graph,
    weights: dict[str, torch.Tensor] | None,
    data: TensorData,
    config: TrainConfig,
    *,
    seed: int = 0,
    deadline: float | None = None,
    max_epochs: int | None = None,
    until_deadline: bool = False,
    on_epoch: EpochCallback | None = None,
    slot: int = 0,
    scored_after: int = 0,
    score_per_image: float = 0.0,
    average: float = 0.0,
) -> TrainResult:
    """Train ``graph`` (starting from any fitting ``weights``) and return its best state (on the CPU)
    by validation accuracy, ties broken by validation loss. Stops at ``patience`` epochs without
    improvement, ``max_epochs`` or the ``deadline`` (a ``time.time()`` value), cutting the epoch in
    progress early enough that its validation, and the ``scored_after`` images the caller scores
    after it (at ``score_per_image`` seconds each where the caller measured it), end by the deadline
    (``Cutoff``). ``slot`` picks the GPU when there are several (see
    ``automl.training.device``). Without validation data (the final fit) it returns the last weights, or
    with ``average`` > 0 the mean of the weights at the ends of the epochs in that last share of the
    schedule (``TailAverage``; its batch-norm pass over the training images counts as scored after)."""
    start = time.time()
    config = tuned(resolve(config, len(data.x_train)), graph)  # 0s sized from the data; the graph's steps
    placement = place(config.device, config.amp, slot)  # a ConfigError: no candidate could train
    try:
        epochs = None if until_deadline and deadline is not None else max_epochs or config.max_epochs
        validation = len(data.x_val) if data.x_val is not None else 0
        scored_after += len(data.x_train) if average and not validation else 0
        cutoff = Cutoff(deadline, validation + scored_after, score_per_image)
        result = _train(graph, weights, data, config, seed, cutoff, epochs, on_epoch, placement,
                        TailAverage(0.0 if validation else average))
    except Exception as exc:  # a bug, NaN loss, out of memory: this candidate fails, the search goes on
        if stops_the_run(exc):
            raise
        result = failed_result(exc)
    result.train_seconds = time.time() - start
    return result


def tail_score(history: list[dict[str, Any]], epochs: int, best: float | None) -> float | None:
    """The mean validation accuracy of the last ``epochs`` epochs of ``history`` (fewer where it has
    fewer); ``best`` where ``epochs`` is 0 or no epoch was scored."""
    curve = [h["val_accuracy"] for h in history if h.get("val_accuracy") is not None][-epochs:] if epochs else []
    return sum(curve) / len(curve) if curve else best


def score_weights(graph: Graph, weights: dict[str, torch.Tensor], data: TensorData,
                  config: TrainConfig) -> TrainResult:
    """``weights`` scored on the validation split without training: a warm start's root, trained by an
    earlier search, is ranked on this data for the price of a forward pass."""
    start = time.time()
    placement = place(config.device, config.amp)
    model = build_module(graph)
    model.load_state_dict(weights)  # strict
    val_acc, val_loss = scores(placement.model(model), data.x_val, data.y_val)
    return TrainResult(val_accuracy=val_acc, val_loss=val_loss, score=val_acc, inherited_val_accuracy=val_acc,
                       stopped="warm start", train_seconds=time.time() - start, state=weights)


def _train(graph: Graph, weights: dict[str, torch.Tensor] | None, data: TensorData, config: TrainConfig,
           seed: int, cutoff: Cutoff, max_epochs: int | None, on_epoch: EpochCallback | None,
           placement: Placement, tail: TailAverage) -> TrainResult:
    devices = [placement.device.index or 0] if placement.cuda else []
    with torch.random.fork_rng(devices=devices):  # initialization and dropout draw from this seed only
        torch.manual_seed(seed)
        return _train_seeded(graph, weights, data, config, seed, cutoff, max_epochs, on_epoch, placement, tail)


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy in the default layout: saved weights do not depend on where they trained."""
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
            for k, v in model.state_dict().items()}


def _train_seeded(graph: Graph, weights: dict[str, torch.Tensor] | None, data: TensorData, config: TrainConfig,
                  seed: int, cutoff: Cutoff, max_epochs: int | None, on_epoch: EpochCallback | None,
                  placement: Placement, tail: TailAverage) -> TrainResult:
    model = build_module(graph)
    if weights:
        model.load_state_dict(weights)  # strict: an inheritance bug must fail, not train from random
    model = placement.model(model)
    train = TensorData(*placement.dataset(data.x_train, data.y_train))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = LRSchedule(config, max_epochs, cutoff.deadline)
    has_val = data.x_val is not None and len(data.x_val) > 0
    result = TrainResult(stopped="max_epochs")
    if weights and has_val:
        result.inherited_val_accuracy = accuracy(model, data.x_val, data.y_val)
    best, since_best = (-1.0, 0.0), 0
    for epoch in itertools.count(1) if max_epochs is None else range(1, max_epochs + 1):
        epoch_start = time.time()
        loss, cut = _run_epoch(model, optimizer, train, config, generator, cutoff, schedule, epoch, placement)
        scoring = time.time()
        val_acc, val_loss = scores(model, data.x_val, data.y_val) if has_val else (None, None)
        result.score_seconds = time.time() - scoring
        if has_val:
            cutoff.scored(result.score_seconds, len(data.x_val))
        info = EpochInfo(epoch, max_epochs, loss, val_acc, val_loss, time.time() - epoch_start)
        result.history.append({"epoch": epoch, "train_loss": loss, "val_accuracy": val_acc, "val_loss": val_loss,
                               "seconds": info.seconds})
        result.epochs = epoch
        tail.observe(model, schedule.progress(epoch))
        if on_epoch:
            on_epoch(info)
        # no validation: keep the last epoch
        score = (val_acc, -val_loss) if val_acc is not None and val_loss is not None else (float(epoch), 0.0)
        if score > best:
            best, since_best = score, 0
            result.best_epoch, result.val_accuracy, result.val_loss = epoch, val_acc, val_loss
            result.state = _cpu_copy(model)
        else:
            since_best += 1
        if cut or cutoff.passed():
            result.stopped = "deadline"
            break
        if has_val and max_epochs is not None and since_best >= config.patience:
            result.stopped = "patience"
            break
    if result.state is None:  # cut before a single epoch finished
        result.state = _cpu_copy(model)
    result.score = tail_score(result.history, config.score_epochs, result.val_accuracy)
    averaged = tail.state(train.x_train, config.batch_size, placement)
    if averaged is not None:
        result.state, result.averaged_epochs = averaged, tail.count
    return result


def _run_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData, config: TrainConfig,
               generator: torch.Generator, cutoff: Cutoff, schedule: LRSchedule, epoch: int,
               placement: Placement) -> tuple[float, bool]:
    """One pass over shuffled training data; returns (mean loss, whether the ``cutoff`` cut it), which
    learns the training speed as it goes; the learning rate anneals to the cutoff, not past it.
    The loss is summed on the device and read once per epoch: reading it per batch would make the
    CPU wait for the GPU at every step."""
    model.train()
    n, start, lr_at = len(data.x_train), time.time(), schedule.for_epoch(epoch)
    order = torch.randperm(n, generator=generator)
    total, seen, scaler = torch.zeros((), device=placement.device), 0, placement.scaler()
    for i in range(0, n, config.batch_size):
        cutoff.observe(time.time() - start, seen)
        schedule.deadline = cutoff.at
        if seen and cutoff.passed():
            return _finite(total, seen, i, config), True
        idx = order[i : i + config.batch_size]
        if len(idx) < 2 and seen:  # BatchNorm needs more than one sample per batch
            continue
        x = data.x_train[idx.to(data.x_train.device)]
        if config.augment:
            x = augment(x, config.crop_padding, config.flip, generator)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(i / n)
        with placement.autocast():
            loss = F.cross_entropy(model(placement.batch(x)), data.y_train[idx.to(data.y_train.device)],
                                   label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.detach().float() * len(idx)
        seen += len(idx)
    return _finite(total, seen, n, config), False


def _finite(total: torch.Tensor, seen: int, at: int, config: TrainConfig) -> float:
    loss = float(total) / max(seen, 1)
    if not math.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss} by batch {at // config.batch_size}")
    return loss
