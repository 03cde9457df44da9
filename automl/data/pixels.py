"""Images as uint8 pixels at the network's input size, normalized one batch at a time.

Why: float32 copies of a whole dataset are four times its pixels and must all sit in memory (50,000 RGB
photos at 224 px would need 30 GB); uint8 pixels can stay on disk as a memory map (``.npy``) that training
reads batch by batch, so resident memory no longer grows with the dataset. The same class holds small
datasets in RAM: one code path, so a streamed run and an in-memory run compute the same numbers.
Normalization here is the exported model's (``automl.data.preprocess.InputAdapter``): x / 255, then
(x - mean) / std.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HASH_CHUNK = 1024  # images hashed at a time: bounded memory on any dataset


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Pixels:
    """uint8 images (N, C, S, S), held as one or more parts (arrays in RAM, or memory maps of ``.npy``
    caches) read as one; indexing returns normalized float32 tensors of the rows asked for. Joining
    parts (train + validation for the final fit) copies nothing."""

    parts: tuple[np.ndarray, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        shapes = {p.shape[1:] for p in self.parts}
        if len(shapes) != 1 or any(p.dtype != np.uint8 or p.ndim != 4 for p in self.parts):
            raise ValueError(f"pixels must be uint8 (N, C, S, S) parts of one shape; got {sorted(shapes)}")
        object.__setattr__(self, "_scale", (torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1),
                                            torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)))

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.parts[0].shape[1:]))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, index: slice | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Normalized float32 rows: a slice, or indices in any order."""
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        rows = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, dtype=np.int64)
        return self.normalize(torch.from_numpy(self.raw(rows)))

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """The uint8 pixels of ``rows``, gathered from the parts that hold them."""
        out = np.empty((len(rows), *self.parts[0].shape[1:]), dtype=np.uint8)
        start = 0
        for part in self.parts:
            inside = (rows >= start) & (rows < start + len(part))
            if inside.any():
                out[inside] = part[rows[inside] - start]
            start += len(part)
        return out

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        mean, std = self._scale
        return (pixels.float() / 255.0 - mean) / std

    def joined(self, other: "Pixels") -> "Pixels":
        return Pixels(self.parts + other.parts, self.mean, self.std)

    def digest(self, into: "hashlib._Hash") -> None:
        """Feed the pixels (chunk by chunk) and the normalization into a hash."""
        for part in self.parts:
            for start in range(0, len(part), HASH_CHUNK):
                into.update(np.ascontiguousarray(part[start : start + HASH_CHUNK]).tobytes())
        into.update(repr((self.mean, self.std)).encode())


class Moments:
    """Per-channel histograms of pixel values, added a chunk at a time: the exact normalization
    statistics of a dataset seen once, as its cache is written, without holding, re-reading or copying
    it to float (a float64 copy of one chunk of 128 px images would be eight times the chunk)."""

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None  # (channels, 256)

    def add(self, chunk: np.ndarray) -> np.ndarray:
        counts = np.stack([np.bincount(chunk[:, c].ravel(), minlength=256) for c in range(chunk.shape[1])])
        self.counts = counts if self.counts is None else self.counts + counts
        return chunk

    def result(self) -> tuple[list[float], list[float]]:
        """(mean, std) of pixels / 255 per channel; std kept away from 0 so a constant channel normalizes
        to finite values."""
        if self.counts is None:
            raise ValueError("no pixels to take statistics of")
        values = np.arange(256) / 255.0
        n = self.counts.sum(axis=1)
        mean = self.counts @ values / n
        var = self.counts @ (values * values) / n - mean * mean
        return mean.tolist(), np.sqrt(np.maximum(var, 1e-12)).clip(min=1e-3).tolist()


def statistics(parts: Sequence[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of pixels / 255."""
    moments = Moments()
    for part in parts:
        moments.add(part)
    return moments.result()


def write_cache(path: str | Path, shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> None:
    """Write a ``.npy`` pixel cache of ``shape`` from uint8 chunks in order, with plain writes: a memory
    map being filled would keep every written page resident in this process."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False, "shape": shape})
        rows = 0
        for chunk in chunks:
            handle.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
            rows += len(chunk)
    if rows != shape[0]:
        raise ValueError(f"{path}: wrote {rows} images of the {shape[0]} declared")


def open_cache(path: str | Path) -> np.ndarray:
    """A ``.npy`` pixel cache as a read-only memory map: its pages are read as batches need them and
    are the kernel's to drop, so a dataset larger than memory trains."""
    return np.load(path, mmap_mode="r", allow_pickle=False)
