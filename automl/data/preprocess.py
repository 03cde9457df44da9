"""Preprocessing: channel conversion, resize and normalization, defined once as a torch module.

Why one module: the library (training, ``predict``) and every exported artifact (TorchScript, ONNX,
MLflow pyfunc) run this same code, so their predictions cannot drift apart. Normalization statistics
come from the training split only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.data.images import ImageBatch, as_image_list
from automl.errors import DataError, NotFittedError

_STATS_CHUNK = 1024


class InputAdapter(nn.Module):
    """Raw pixels (N, C, H, W), values 0..255, C in {1, 3}, any H and W -> normalized (N, c, s, s).

    The channel conversion uses only ops that are valid for both 1 and 3 input channels (mean over
    channels, or expand), so a traced or exported copy accepts either without control flow.
    """

    def __init__(self, channels: int, size: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.channels = channels
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x / 255.0 - self.mean) / self.std


def image_to_chw(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> float32 (C, H, W) with C in {1, 3}."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise DataError(f"an image must be (H, W) or (H, W, C) with C in 1, 3, 4; got shape {arr.shape}.")
    arr = arr[:, :, :3] if arr.shape[2] == 4 else arr
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def channels_of(images: list[np.ndarray]) -> int:
    """3 if any image has colour, else 1."""
    return 3 if any(np.ndim(img) == 3 and np.shape(img)[2] >= 3 for img in images) else 1


def native_size(images: list[np.ndarray]) -> int:
    """The median of the images' shorter sides: what they have to give before any resize."""
    return int(np.median([min(np.shape(img)[:2]) for img in images]))


def adapt_images(adapter: nn.Module, x: ImageBatch) -> torch.Tensor:
    """Run the adapter over images of any sizes, batching those that share a shape."""
    images = as_image_list(x)
    if not images:
        raise DataError("no images given.")
    out: list[torch.Tensor | None] = [None] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    chw = [image_to_chw(img) for img in images]
    for i, arr in enumerate(chw):
        groups.setdefault(arr.shape, []).append(i)
    with torch.no_grad():
        for idx in groups.values():
            batch = adapter(torch.from_numpy(np.stack([chw[i] for i in idx])))
            for j, i in enumerate(idx):
                out[i] = batch[j]
    return torch.stack(out)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Preprocessor:
    """Everything needed to turn raw images into network inputs and outputs back into user labels."""

    image_size: int
    channels: int
    mean: list[float]
    std: list[float]
    classes: list[Any]

    @classmethod
    def fit(cls, x: ImageBatch, y: np.ndarray | list, image_size: int) -> "Preprocessor":
        """Learn channels, per-channel statistics and the label set from training data only."""
        images = as_image_list(x)
        labels = _to_python(np.asarray(y))
        if len(images) != len(labels):
            raise DataError(f"got {len(images)} images but {len(labels)} labels.")
        channels = channels_of(images)
        raw = InputAdapter(channels, image_size, [0.0] * channels, [1.0] * channels)
        total = torch.zeros(channels, dtype=torch.float64)
        total_sq = torch.zeros(channels, dtype=torch.float64)
        for start in range(0, len(images), _STATS_CHUNK):
            t = adapt_images(raw, images[start : start + _STATS_CHUNK]).double()
            total += t.sum(dim=(0, 2, 3))
            total_sq += (t * t).sum(dim=(0, 2, 3))
        n = len(images) * image_size * image_size
        mean = total / n
        std = (total_sq / n - mean * mean).clamp_min(1e-12).sqrt().clamp_min(1e-3)
        classes = sorted(set(labels), key=lambda v: (str(type(v)), v))
        return cls(image_size, channels, mean.tolist(), std.tolist(), classes)

    def adapter(self) -> InputAdapter:
        return InputAdapter(self.channels, self.image_size, self.mean, self.std)

    def transform(self, x: ImageBatch) -> torch.Tensor:
        """Raw images -> normalized float tensor (N, channels, size, size)."""
        return adapt_images(self.adapter(), x)

    def encode(self, y: np.ndarray | list) -> torch.Tensor:
        """User labels -> class indices; an unseen label is an error naming it."""
        index = {c: i for i, c in enumerate(self.classes)}
        labels = _to_python(np.asarray(y))
        unknown = sorted({str(v) for v in labels if v not in index})
        if unknown:
            raise DataError(f"labels not seen in training: {unknown[:10]}; known classes are {self.classes[:20]}.")
        return torch.tensor([index[v] for v in labels], dtype=torch.long)

    def decode(self, indices: np.ndarray | torch.Tensor) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[np.asarray(indices)].astype(_label_dtype(self.classes))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        if not d:
            raise NotFittedError("no preprocessing state; fit first.")
        return cls(int(d["image_size"]), int(d["channels"]), list(d["mean"]), list(d["std"]), list(d["classes"]))


def _to_python(arr: np.ndarray) -> list[Any]:
    """numpy labels -> JSON-friendly Python values (str, int, float, bool)."""
    return [v.item() if hasattr(v, "item") else v for v in arr.tolist()]


def _label_dtype(classes: list[Any]) -> Any:
    if all(isinstance(c, str) for c in classes):
        return str
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return np.int64
    return object
