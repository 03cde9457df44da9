"""Preprocessing: channel conversion, antialiased resize and normalization, defined once as a torch module.

Why one module: the library (training, ``predict``) and every exported artifact (TorchScript, ONNX,
MLflow pyfunc) run this same code, so their predictions cannot drift apart. Normalization statistics
come from the training split only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from automl.data.images import ImageBatch, as_image_list
from automl.data.pixels import Pixels, statistics
from automl.errors import DataError, NotFittedError

ADAPT_VALUES = 16 * 3 * 128 * 128  # float32 values converted and resized at a time (3 MB); at least one image
CHUNK = 512  # images decoded at a time (fewer when they are larger than the cache's size: decode_chunk)


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
        return (self.pixels(x) / 255.0 - self.mean) / self.std

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The channel conversion and the antialiased resize, values still 0..255 (float)."""
        x = x.float()
        if self.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            x = x.expand(-1, 3, -1, -1)
        return resize(x, self.size)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size) by antialiased bilinear resampling, as PIL's ``BILINEAR`` and
    ``F.interpolate(..., antialias=True)`` do it: each output pixel averages the input pixels under a
    triangle as wide as the scale, so shrinking a large photo keeps no aliasing artifacts. Written as two
    weight matrices built from the input's own shape, so the traced TorchScript and the ONNX export (whose
    opset has no antialiased resize that matches) take any H and W and compute the same numbers."""
    rows = _resampling(torch.ones_like(x[0, 0, :, 0]).cumsum(0) - 0.5, size)
    cols = _resampling(torch.ones_like(x[0, 0, 0, :]).cumsum(0) - 0.5, size)
    return torch.einsum("ih,nchw,jw->ncij", rows, x, cols)


def _resampling(centres: torch.Tensor, size: int) -> torch.Tensor:
    """(size, n) weights from the ``n`` input pixels' centres (0.5, 1.5, ...): a triangle filter of
    half-width max(scale, 1) around each output pixel's centre, each row summing to 1."""
    scale = (centres[-1] + 0.5) / size
    out = (torch.arange(size, dtype=torch.float32, device=centres.device) + 0.5) * scale
    weights = torch.relu(1 - (centres[None, :] - out[:, None]).abs() / torch.clamp(scale, min=1.0))
    return weights / weights.sum(1, keepdim=True)


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


def survey(chunks: Iterable[ImageBatch]) -> tuple[int, int]:
    """(``channels_of``, ``native_size``) of images seen a chunk at a time: what a pixel cache is built
    at, known before any of it is written, without holding the images."""
    colour, sides = False, []
    for chunk in chunks:
        images = as_image_list(chunk)
        colour = colour or channels_of(images) == 3
        sides += [min(np.shape(img)[:2]) for img in images]
        del chunk, images  # before the next is decoded
    if not sides:
        raise DataError("no images given.")
    return (3 if colour else 1), int(np.median(sides))


def to_pixels(x: ImageBatch, channels: int, size: int) -> np.ndarray:
    """Images of any sizes -> uint8 (N, channels, size, size): converted, resized (antialiased), rounded."""
    images = as_image_list(x)
    if not images:
        raise DataError("no images given.")
    out = np.empty((len(images), channels, size, size), dtype=np.uint8)
    done = 0
    for batch in pixel_batches(images, channels, size):
        out[done : done + len(batch)] = batch
        done += len(batch)
    return out


def pixel_batches(x: ImageBatch, channels: int, size: int) -> Iterator[np.ndarray]:
    """``to_pixels`` of consecutive images of one shape at a time, in order, with at most
    ``ADAPT_VALUES`` of them in float32 (one image at the least): the resize's working memory stays a
    few MB beside the uint8 result, however large the images."""
    images = as_image_list(x)
    adapter = InputAdapter(channels, size, [0.0] * channels, [1.0] * channels)
    start = 0
    while start < len(images):
        shape = np.shape(images[start])
        per_batch = max(1, ADAPT_VALUES // (3 * shape[0] * shape[1]))  # as RGB: the most it can take
        stop = start + 1
        while stop < len(images) and stop - start < per_batch and np.shape(images[stop]) == shape:
            stop += 1
        if _unchanged(images[start], channels, size):  # the resize and conversion would be exact copies
            yield np.stack([np.asarray(img).reshape(size, size, channels).transpose(2, 0, 1) for img in
                            images[start:stop]])
        else:
            with torch.no_grad():
                batch = torch.from_numpy(np.stack([image_to_chw(img) for img in images[start:stop]]))
                yield adapter.pixels(batch).round().clamp(0, 255).to(torch.uint8).numpy()
        start = stop


def _unchanged(image: np.ndarray, channels: int, size: int) -> bool:
    """Whether ``image`` already is ``channels`` x ``size`` x ``size`` uint8 pixels: the adapter's resize at
    scale 1 and its channel conversion would give it back as it is."""
    shape = np.shape(image)
    own = shape[2] if len(shape) == 3 else 1
    return shape[:2] == (size, size) and own == channels and np.asarray(image).dtype == np.uint8


def decode_chunk(native: int, size: int) -> int:
    """Images to decode at a time so that, at their ``native`` side, they take no more memory than
    ``CHUNK`` images at the cache's ``size``: large photos are read fewer at a time."""
    return max(1, min(CHUNK, CHUNK * size * size // max(native * native, 1)))


def pixel_stream(chunks: Iterable[ImageBatch], channels: int, size: int) -> Iterator[np.ndarray]:
    """The uint8 pixels of every image of ``chunks`` (decoded a chunk at a time), in small batches, in
    order. Each chunk is let go before the next is decoded, so a stream holds one chunk's images at most."""
    for chunk in chunks:
        yield from pixel_batches(chunk, channels, size)
        del chunk


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
        mean, std = statistics([to_pixels(images, channels_of(images), image_size)])
        return cls.of(labels, image_size, channels_of(images), mean, std)

    @classmethod
    def of(cls, labels: list[Any], image_size: int, channels: int, mean: list[float],
           std: list[float]) -> "Preprocessor":
        """From the statistics of training pixels (``automl.data.pixels.statistics``) and their labels."""
        classes = sorted(set(labels), key=lambda v: (str(type(v)), v))
        return cls(image_size, channels, mean, std, classes)

    def adapter(self) -> InputAdapter:
        return InputAdapter(self.channels, self.image_size, self.mean, self.std)

    def images(self, x: ImageBatch) -> Pixels:
        """Raw images -> their uint8 pixels at the network's size, normalized as they are read."""
        return Pixels((to_pixels(x, self.channels, self.image_size),), tuple(self.mean), tuple(self.std))

    def transform(self, x: ImageBatch) -> torch.Tensor:
        """Raw images -> normalized float tensor (N, channels, size, size), as training reads them."""
        return self.images(x)[:]

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
