"""Training one candidate: ``train_candidate(graph, weights, data, config) -> TrainResult``.

Separate from searching so that the same function runs in-process (the Python API) or as a Prefect
mapped task (the flow). Data is already decoded, resized and normalized (done once per run);
augmentation works on whole batches of tensors, so an epoch has no per-sample Python work.
A failing candidate returns a result with ``status="failed"`` and its error instead of raising.
"""

from __future__ import annotations

import copy
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

from automl.builder import build_module, load_matching
from automl.config import TrainConfig
from automl.graph import Graph


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
    seconds: float


@dataclass
class TrainResult:
    status: str  # "complete" | "failed"
    val_accuracy: float | None = None
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


def set_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads (0: one per core), set once, deliberately."""
    want = threads if threads > 0 else (os.cpu_count() or 1)
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding (a shift of up to ``padding`` pixels) and optional horizontal
    flip, for a whole batch at once by gathering shifted index grids."""
    n, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        batch = torch.arange(n)[:, None, None, None]
        chans = torch.arange(x.shape[1])[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    return float((predict_logits(model, x, batch_size).argmax(1) == y).float().mean())


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


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
) -> TrainResult:
    """Train ``graph`` (starting from any fitting ``weights``) and return its best state by validation
    accuracy. Stops at ``patience`` epochs without improvement, ``max_epochs`` or the ``deadline``
    (a ``time.time()`` value), cutting the epoch in progress at the deadline."""
    start = time.time()
    try:
        result = _train(graph, weights, data, config, seed, deadline, max_epochs or config.max_epochs, on_epoch)
    except (RuntimeError, ValueError, FloatingPointError, MemoryError) as exc:
        error = f"{exc.__class__.__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        result = TrainResult(status="failed", stopped="error", error=error)
    result.train_seconds = time.time() - start
    return result


def _train(graph: Graph, weights: dict[str, torch.Tensor] | None, data: TensorData, config: TrainConfig,
           seed: int, deadline: float | None, max_epochs: int, on_epoch: EpochCallback | None) -> TrainResult:
    set_threads(config.threads)
    with torch.random.fork_rng(devices=[]):  # initialization and dropout draw from this seed only
        torch.manual_seed(seed)
        return _train_seeded(graph, weights, data, config, seed, deadline, max_epochs, on_epoch)


def _train_seeded(graph: Graph, weights: dict[str, torch.Tensor] | None, data: TensorData, config: TrainConfig,
                  seed: int, deadline: float | None, max_epochs: int, on_epoch: EpochCallback | None) -> TrainResult:
    model = build_module(graph)
    if weights:
        load_matching(model, weights)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    has_val = data.x_val is not None and len(data.x_val) > 0
    result = TrainResult(status="complete", stopped="max_epochs")
    if weights and has_val:
        result.inherited_val_accuracy = accuracy(model, data.x_val, data.y_val)
    best_acc, since_best = -1.0, 0
    for epoch in range(1, max_epochs + 1):
        epoch_start = time.time()
        loss, cut = _run_epoch(model, optimizer, data, config, generator, deadline)
        val_acc = accuracy(model, data.x_val, data.y_val) if has_val else None
        info = EpochInfo(epoch, max_epochs, loss, val_acc, time.time() - epoch_start)
        result.history.append({"epoch": epoch, "train_loss": loss, "val_accuracy": val_acc, "seconds": info.seconds})
        result.epochs = epoch
        if on_epoch:
            on_epoch(info)
        score = val_acc if val_acc is not None else float(epoch)  # no validation: keep the last epoch
        if score > best_acc:
            best_acc, since_best = score, 0
            result.best_epoch, result.val_accuracy = epoch, val_acc
            result.state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        if cut or (deadline is not None and time.time() >= deadline):
            result.stopped = "deadline"
            break
        if has_val and since_best >= config.patience:
            result.stopped = "patience"
            break
    if result.state is None:  # cut before a single epoch finished
        result.state = copy.deepcopy(model.state_dict())
    return result


def _run_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData, config: TrainConfig,
               generator: torch.Generator, deadline: float | None) -> tuple[float, bool]:
    """One pass over shuffled training data; returns (mean loss, whether the deadline cut it)."""
    model.train()
    n = len(data.x_train)
    order = torch.randperm(n, generator=generator)
    total, seen = 0.0, 0
    for i in range(0, n, config.batch_size):
        if deadline is not None and seen and time.time() >= deadline:
            return total / seen, True
        idx = order[i : i + config.batch_size]
        if len(idx) < 2 and seen:  # BatchNorm needs more than one sample per batch
            continue
        x = data.x_train[idx]
        if config.augment:
            x = augment(x, config.crop_padding, config.flip, generator)
        loss = F.cross_entropy(model(x), data.y_train[idx])
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training loss became {loss.item()} at batch {i // config.batch_size}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
        seen += len(idx)
    return total / max(seen, 1), False
