"""Reading user data: a labels CSV plus an image folder, checked row by row.

The on-disk format is the one Auto-Keras users know: a folder of image files and a CSV whose first
column names a file (relative to the folder) and whose second column is its label (any string).
Every bad row is collected and reported in one error, so a user fixes the CSV once, not once per run.
"""

from __future__ import annotations

import io
import mmap
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from automl.data.labels import Problem, Row, raise_problems, read_rows
from automl.errors import DataError

ImageBatch = np.ndarray | list[np.ndarray]
MAX_IMAGE_PIXELS = 64_000_000  # larger files are refused as likely decompression bombs
UNREADABLE = (OSError, SyntaxError, ValueError, EOFError)
Progress = Callable[[Sequence[Any], str, str], Iterable[Any]]  # (items, description, unit) -> items


def plain(items: Sequence[Any], desc: str, unit: str) -> Iterable[Any]:
    """No progress shown: the items as they are."""
    return items


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image to uint8, (H, W) for grayscale or (H, W, 3) for colour; alpha is dropped."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found.")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    return open_checked(path, data)


def open_checked(path: str | Path, data: bytes) -> np.ndarray:
    """Decode ``data`` (the bytes of ``path``) to an array, refusing images over ``MAX_IMAGE_PIXELS``
    before decoding them. Pillow's own bomb check (a warning, then an error, at its larger limit) is
    turned into the same refusal, so no Pillow exception reaches the user without the file's name."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise DataError(f"{path}: {img.width}x{img.height} pixels is over the limit of "
                                    f"{MAX_IMAGE_PIXELS:,}; refusing a possible decompression bomb (resize it).")
                return _to_array(img)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: over the pixel limit; refusing a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image, or in a format Pillow cannot read.") from None
    except UNREADABLE as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc}).") from None


def _to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        return np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return np.clip(arr, 0, 255).astype(np.uint8)
    if img.mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"))
    if img.mode == "P":
        rgb = np.asarray(img.convert("RGB"))
        is_gray = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
        return rgb[..., 0].copy() if is_gray else rgb
    return np.asarray(img.convert("RGB"))


def resolve_image_path(images_path: Path, name: str) -> Path:
    """Join a CSV entry to the image folder, refusing entries that escape it."""
    root = images_path.resolve()
    candidate = (root / name).resolve()
    if not candidate.is_relative_to(root):
        raise DataError(f"{name!r} points outside the images folder {images_path}; refusing it.")
    return candidate


def load_image_dataset(
    csv_file_path: str | Path, images_path: str | Path, filename_column: str = "", label_column: str = "",
    progress: Progress = plain, lazy: bool = False,
) -> tuple[ImageBatch | ImageFiles, np.ndarray]:
    """Load images and labels (Auto-Keras's function of the same name). ``progress`` wraps the files as
    they are read (the faces pass a progress bar; data knows nothing of consoles).

    Returns ``(x, y)``: ``x`` is one uint8 array (N, H, W[, 3]) when all images share a shape, else a
    list of arrays; with ``lazy`` it is an ``ImageFiles`` that decodes them only when read, a chunk at a
    time (a dataset larger than memory). ``y`` holds the labels as strings, as written in the CSV.
    """
    csv_path, folder = Path(csv_file_path), Path(images_path)
    rows, problems = read_rows(csv_path, filename_column, label_column, folder if folder.is_dir() else None)
    raise_problems(csv_path, problems)
    if not rows:
        raise DataError(f"{csv_path}: no data rows; add one row per image (file name, label).")
    if not folder.is_dir():
        raise DataError(f"{folder}: images folder not found (named by {csv_path}).")
    labels = np.asarray([r.label for r in rows])
    return (ImageFiles(tuple(rows), folder, csv_path) if lazy else read_rows_images(rows, folder, csv_path, progress),
            labels)


@dataclass(frozen=True)
class ImageFiles:
    """Images named by rows of a labels CSV, decoded only when read: what a Python user passes instead of
    arrays when the dataset does not fit in memory. Errors name the CSV's lines, as the pipeline's do."""

    rows: tuple[Row, ...]
    folder: Path
    csv: Path

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices: Sequence[int]) -> "ImageFiles":
        return ImageFiles(tuple(self.rows[i] for i in indices), self.folder, self.csv)

    def chunks(self, size: int, progress: Progress = plain, desc: str = "") -> Iterator[ImageBatch]:
        """The images decoded ``size`` at a time, in order."""
        for start in progress(range(0, len(self.rows), size), desc or f"reading {self.csv.name}", "chunks"):
            yield read_rows_images(self.rows[start : start + size], self.folder, self.csv)


def read_rows_images(rows: Sequence[Row], folder: Path, csv_path: Path, progress: Progress = plain) -> ImageBatch:
    """The images of ``rows``: one array when they share a shape, else a list. Every one that cannot be
    read is reported, by ``csv_path`` line, at once."""
    images, problems = _Gathered(len(rows)), []
    for row in progress(rows, f"reading {csv_path.name}", "images"):
        try:
            images.add(read_image(resolve_image_path(folder, row.name)))
        except DataError as exc:
            problems.append(Problem(row.line, "unreadable image", str(exc)))
    raise_problems(csv_path, problems, "fix the files or remove their rows")
    return images.result()


class _Gathered:
    """Decoded images copied into one array as they come while they share a shape (a list once one
    differs). Why: a list of them and its stacked copy held twice the chunk, and thousands of small
    arrays freed one by one fragment the heap, which kept the preprocess step hundreds of MB above
    what it reads; one array is one allocation, given back whole (``own_pages``)."""

    def __init__(self, n: int) -> None:
        self.n, self.count = n, 0
        self.array: np.ndarray | None = None
        self.images: list[np.ndarray] | None = None

    def add(self, image: np.ndarray) -> None:
        if self.array is None and self.images is None:
            self.array = own_pages((self.n, *image.shape), image.dtype)
        if self.images is None and self.array is not None and image.shape == self.array.shape[1:] \
                and image.dtype == self.array.dtype:
            self.array[self.count] = image
        else:
            if self.images is None:
                self.images = [self.array[i].copy() for i in range(self.count)] if self.array is not None else []
                self.array = None
            self.images.append(image)
        self.count += 1

    def result(self) -> ImageBatch:
        if self.images is not None:
            return self.images
        return self.array[: self.count] if self.array is not None else []


def own_pages(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array in memory of its own (an anonymous map), returned to the system when it is
    freed. Why not ``np.empty``: after the first chunk, glibc serves allocations of this size from its heap
    and keeps them when freed; the small allocations made while the next chunk decodes land inside, so the
    next chunk's array no longer fits there and the heap grows by another chunk (the preprocess step held
    two chunks' worth for one in use)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes < mmap.PAGESIZE:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).reshape(shape)


def as_image_list(x: ImageBatch) -> list[np.ndarray]:
    """Accept one array (N, H, W[, C]) or a list of arrays; return a list of per-image arrays."""
    if isinstance(x, np.ndarray):
        if x.ndim not in (3, 4):
            raise DataError(f"images array must be (N, H, W) or (N, H, W, C); got shape {x.shape}.")
        return list(x)
    images = [np.asarray(img) for img in x]
    for i, img in enumerate(images):
        if img.ndim not in (2, 3):
            raise DataError(f"image {i} must be (H, W) or (H, W, C); got shape {img.shape}.")
    return images
