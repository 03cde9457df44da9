"""Training one candidate: ``train_candidate(graph, weights, data, config) -> TrainResult``.

Separate from searching so that the same function runs in-process (the Python API) or as a Prefect
mapped task (the flow). Data is already decoded, resized and normalized (done once per run);
augmentation works on whole batches of tensors, so an epoch has no per-sample Python work.
A failing candidate returns a result with ``status="failed"`` and its error instead of raising.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl.arch.builder import build_module, load_matching
from automl.config import TrainConfig
from automl.training.device import Placement, place
from automl.errors import stops_the_run
from automl.arch.graph import Graph


@dataclass(frozen=True)
class TensorData:
    """Normalized inputs (N, C, S, S) and class indices; validation may be absent (final fit)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None


@dataclass(frozen=True)
class EpochInfo:
    epoch: int
    max_epochs: int
    train_loss: float
    val_accuracy: float | None
    val_loss: float | None
    seconds: float


@dataclass
class TrainResult:
    status: str  # "complete" | "failed"
    val_accuracy: float | None = None
    val_loss: float | None = None  # at the best epoch: breaks ties of accuracy on small validation sets
    inherited_val_accuracy: float | None = None  # before training, with the weights it started from
    best_epoch: int = 0
    epochs: int = 0
    stopped: str = ""  # "patience" | "max_epochs" | "deadline" | "error"
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """Everything but the weights: what goes into JSON records and MLflow."""
        return {k: v for k, v in self.__dict__.items() if k != "state"}


EpochCallback = Callable[[EpochInfo], None]


def failed_result(exc: BaseException) -> TrainResult:
    """A failed candidate's result: the error's type, message and where it was raised."""
    where = "".join(traceback.format_exception(exc, limit=-4)[1:])
    return TrainResult(status="failed", stopped="error", error=f"{exc.__class__.__name__}: {exc}\n{where}")


def set_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads (0: one per core), set once, deliberately."""
    want = threads if threads > 0 else (os.cpu_count() or 1)
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding (a shift of up to ``padding`` pixels) and optional horizontal
    flip, for a whole batch at once by gathering shifted index grids. The random draws come from the
    CPU ``generator`` (the same on any device), the gather runs where ``x`` is."""
    n, _, h, w = x.shape
    d = x.device
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        batch = torch.arange(n)[:, None, None, None]
        chans = torch.arange(x.shape[1])[None, :, None, None]
        x = padded[batch.to(d), chans.to(d), rows.to(d), cols.to(d)]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(d)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    return scores(model, x, y, batch_size)[0]


def scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``(x, y)``."""
    logits = predict_logits(model, x, batch_size)
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Float32 logits on the CPU, computed on whatever device the model is on."""
    model.eval()
    device = next(model.parameters()).device
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size].to(device).contiguous(memory_format=memory)).float().cpu()
                          for i in range(0, len(x), batch_size)])


def train_candidate(
    graph: Graph,
    weights: dict[str, torch.Tensor] | None,
    data: TensorData,
    config: TrainConfig,
    *,
    seed: int = 0,
    deadline: float | None = None,
    max_epochs: int | None = None,
    on_epoch: EpochCallback | None = None,
    slot: int = 0,
) -> TrainResult:
    """Train ``graph`` (starting from any fitting ``weights``) and return its best state (on the CPU)
    by validation accuracy, ties broken by validation loss. Stops at ``patience`` epochs without improvement, ``max_epochs`` or the
    ``deadline`` (a ``time.time()`` value), cutting the epoch in progress at the deadline. ``slot``
    picks the GPU when there are several (see ``automl.training.device``)."""
    start = time.time()
    try:
        placement = place(config.device, config.amp, slot)
        result = _train(graph, weights, data, config, seed, deadline, max_epochs or config.max_epochs, on_epoch,
                        placement)
    except Exception as exc:  # a bug, NaN loss, out of memory: this candidate fails, the search goes on
        if stops_the_run(exc):
            raise
        result = failed_result(exc)
    result.train_seconds = time.time() - start
    return result


def _train(graph: Graph, weights: dict[str, torch.Tensor] | None, data: TensorData, config: TrainConfig,
           seed: int, deadline: float | None, max_epochs: int, on_epoch: EpochCallback | None,
           placement: Placement) -> TrainResult:
    set_threads(config.threads)
    devices = [placement.device.index or 0] if placement.cuda else []
    with torch.random.fork_rng(devices=devices):  # initialization and dropout draw from this seed only
        torch.manual_seed(seed)
        return _train_seeded(graph, weights, data, config, seed, deadline, max_epochs, on_epoch, placement)


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _train_seeded(graph: Graph, weights: dict[str, torch.Tensor] | None, data: TensorData, config: TrainConfig,
                  seed: int, deadline: float | None, max_epochs: int, on_epoch: EpochCallback | None,
                  placement: Placement) -> TrainResult:
    model = build_module(graph)
    if weights:
        load_matching(model, weights)
    model = placement.model(model)
    train = TensorData(*placement.dataset(data.x_train, data.y_train))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = LRSchedule(config, max_epochs, deadline)
    has_val = data.x_val is not None and len(data.x_val) > 0
    result = TrainResult(status="complete", stopped="max_epochs")
    if weights and has_val:
        result.inherited_val_accuracy = accuracy(model, data.x_val, data.y_val)
    best, since_best = (-1.0, 0.0), 0
    for epoch in range(1, max_epochs + 1):
        epoch_start = time.time()
        loss, cut = _run_epoch(model, optimizer, train, config, generator, deadline, schedule.for_epoch(epoch),
                               placement)
        val_acc, val_loss = scores(model, data.x_val, data.y_val) if has_val else (None, None)
        info = EpochInfo(epoch, max_epochs, loss, val_acc, val_loss, time.time() - epoch_start)
        result.history.append({"epoch": epoch, "train_loss": loss, "val_accuracy": val_acc, "val_loss": val_loss,
                               "seconds": info.seconds})
        result.epochs = epoch
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
        if cut or (deadline is not None and time.time() >= deadline):
            result.stopped = "deadline"
            break
        if has_val and since_best >= config.patience:
            result.stopped = "patience"
            break
    if result.state is None:  # cut before a single epoch finished
        result.state = _cpu_copy(model)
    return result


class LRSchedule:
    """Cosine annealing of the learning rate to whichever end comes first: ``max_epochs`` or the
    deadline. Each candidate thus ends at a low learning rate (its validation accuracy is that of a
    settled network, and its children start from settled weights: warm restarts along a lineage), and
    the candidate cut at the deadline, or the one trained until it, ends annealed instead of mid-step."""

    def __init__(self, config: TrainConfig, max_epochs: int, deadline: float | None) -> None:
        self.base, self.cosine, self.max_epochs = config.learning_rate, config.lr_schedule == "cosine", max_epochs
        self.start, self.deadline = time.time(), deadline

    def for_epoch(self, epoch: int) -> Callable[[float], float]:
        """Learning rate as a function of the fraction of this epoch done."""
        return lambda done: self.at(epoch - 1 + done)

    def at(self, epochs_done: float) -> float:
        if not self.cosine:
            return self.base
        progress = epochs_done / self.max_epochs
        if self.deadline is not None and self.deadline > self.start:
            progress = max(progress, (time.time() - self.start) / (self.deadline - self.start))
        return self.base * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


MIN_LR_FRACTION = 0.01  # the last steps still learn a little


def _run_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData, config: TrainConfig,
               generator: torch.Generator, deadline: float | None, lr_at: Callable[[float], float],
               placement: Placement) -> tuple[float, bool]:
    """One pass over shuffled training data; returns (mean loss, whether the deadline cut it).
    The loss is summed on the device and read once per epoch: reading it per batch would make the
    CPU wait for the GPU at every step."""
    model.train()
    n = len(data.x_train)
    order = torch.randperm(n, generator=generator)
    total, seen, scaler = torch.zeros((), device=placement.device), 0, placement.scaler()
    for i in range(0, n, config.batch_size):
        if deadline is not None and seen and time.time() >= deadline:
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
            loss = F.cross_entropy(model(placement.batch(x)), data.y_train[idx.to(data.y_train.device)])
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
