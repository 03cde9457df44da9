"""Images as uint8 pixels at the network's input size, normalized one batch at a time.

Why: float32 copies of a whole dataset are four times its pixels and must all sit in memory (50,000 RGB
photos at 224 px would need 30 GB); uint8 pixels can stay on disk (a ``.npy`` cache) that training reads
batch by batch, so resident memory no longer grows with the dataset. The same class holds small
datasets in RAM: one code path, so a streamed run and an in-memory run compute the same numbers.
Normalization here is the exported model's (``automl.data.preprocess.InputAdapter``): x / 255, then
(x - mean) / std.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HASH_CHUNK = 1024  # images hashed at a time: bounded memory on any dataset
IN_MEMORY_BYTES = 256 * 2**20  # a cache up to this size is read into RAM whole; larger ones stay on disk


class CacheFile:
    """A ``.npy`` uint8 pixel cache (N, C, S, S) on disk, read with positioned reads into new arrays:
    rows in any order, or slices. Why not a memory map: every page a map has touched counts in the
    process's resident memory until the kernel wants it back, so one epoch over a 2 GB cache showed as
    2 GB more resident memory in every process that trains; pages read with ``read`` are the kernel's
    page cache, shared and not the process's."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            self.offset = handle.tell()
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise ValueError(f"{path}: not a uint8 (N, C, S, S) pixel cache ({dtype}, shape {shape})")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype, self.ndim = np.dtype(np.uint8), 4
        self.row_bytes = math.prod(self.shape[1:])
        if os.path.getsize(path) < self.offset + len(self) * self.row_bytes:
            raise ValueError(f"{path}: truncated; it holds fewer than the {len(self)} images its header declares")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice | np.ndarray) -> np.ndarray:
        """The uint8 rows of a slice (one read when its step is 1) or of an index array."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                out = np.empty((max(stop - start, 0), *self.shape[1:]), dtype=np.uint8)
                self._read([(out, start)])
                return out
            index = np.arange(start, stop, step)
        rows = np.asarray(index, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} images in {self.path}")
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        self._read([(out[i : i + 1], int(row) % len(self)) for i, row in enumerate(rows)])
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)

    def _read(self, targets: list[tuple[np.ndarray, int]]) -> None:
        """Fill each (array, first row) from the file."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for out, row in targets:
                view, done = memoryview(out).cast("B"), 0
                while done < len(view):  # a read may return less than asked (over 2 GB at once)
                    got = os.preadv(fd, [view[done:]], self.offset + row * self.row_bytes + done)
                    if got <= 0:
                        raise ValueError(f"{self.path}: truncated at image {row}")
                    done += got
        finally:
            os.close(fd)


Part = np.ndarray | CacheFile  # pixels in RAM, or a cache on disk


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Pixels:
    """uint8 images (N, C, S, S), held as one or more parts (arrays in RAM, or ``.npy`` caches on disk)
    read as one; indexing returns normalized float32 tensors of the rows asked for. Joining
    parts (train + validation for the final fit) copies nothing."""

    parts: tuple[Part, ...]
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
        """The uint8 pixels of ``rows`` (in range), gathered from the parts that hold them."""
        out = np.empty((len(rows), *self.parts[0].shape[1:]), dtype=np.uint8)
        consecutive = bool((np.diff(rows) == 1).all())  # read as slices: one read per part on disk
        start = 0
        for part in self.parts:
            inside = (rows >= start) & (rows < start + len(part))
            if inside.any():
                local = rows[inside] - start
                out[inside] = part[local[0] : local[-1] + 1] if consecutive else part[local]
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
            handle.write(memoryview(np.ascontiguousarray(chunk, dtype=np.uint8)).cast("B"))  # no copy
            rows += len(chunk)
    if rows != shape[0]:
        raise ValueError(f"{path}: wrote {rows} images of the {shape[0]} declared")


def open_cache(path: str | Path, in_memory_bytes: int = IN_MEMORY_BYTES) -> Part:
    """A ``.npy`` pixel cache: read into RAM when it is at most ``in_memory_bytes`` (no reads per
    batch), else a ``CacheFile`` read a batch at a time, so a dataset larger than memory trains."""
    if os.path.getsize(path) <= in_memory_bytes:
        return np.load(path, allow_pickle=False)
    return CacheFile(path)
