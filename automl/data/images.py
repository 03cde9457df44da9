"""Reading user data: a labels CSV plus an image folder, checked row by row.

The on-disk format is the one Auto-Keras users know: a folder of image files and a CSV whose first
column names a file (relative to the folder) and whose second column is its label (any string).
Every bad row is collected and reported in one error, so a user fixes the CSV once, not once per run.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from automl.errors import DataError

ImageBatch = np.ndarray | list[np.ndarray]
MAX_BAD_ROWS_SHOWN = 20
MAX_IMAGE_PIXELS = 64_000_000  # larger files are refused as likely decompression bombs
Progress = Callable[[Sequence[Any], str, str], Iterable[Any]]  # (items, description, unit) -> items


def plain(items: Sequence[Any], desc: str, unit: str) -> Iterable[Any]:
    """No progress shown: the items as they are."""
    return items


def read_labels_csv(
    csv_file_path: str | Path, filename_column: str = "", label_column: str = ""
) -> tuple[list[str], list[str]]:
    """Return (file names, labels) from a CSV with a header row."""
    path = Path(csv_file_path)
    if not path.is_file():
        raise DataError(f"{path}: labels CSV not found. Pass the path of a CSV with a file-name and a label column.")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise DataError(f"{path}: the CSV is empty; it needs a header row and one row per image.")
    header = [h.strip() for h in rows[0]]
    file_idx = _column_index(path, header, filename_column, 0, "file-name")
    label_idx = _column_index(path, header, label_column, 1, "label")
    names, labels, bad = [], [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(file_idx, label_idx):
            bad.append(f"line {line_no}: expected at least {max(file_idx, label_idx) + 1} columns")
            continue
        name, label = row[file_idx].strip(), row[label_idx].strip()
        if not name or not label:
            bad.append(f"line {line_no}: empty {'file name' if not name else 'label'}")
            continue
        names.append(name)
        labels.append(label)
    _raise_bad_rows(path, bad, "fix or remove these rows")
    if not names:
        raise DataError(f"{path}: no data rows; add one row per image (file name, label).")
    return names, labels


def _column_index(path: Path, header: list[str], wanted: str, default: int, what: str) -> int:
    if wanted:
        if wanted not in header:
            raise DataError(f"{path}: no {what} column named {wanted!r}; the header has {header}.")
        return header.index(wanted)
    if len(header) <= default:
        raise DataError(
            f"{path}: needs a {what} column (column {default + 1}); the header has {header}. "
            "Give the CSV a file-name column and a label column."
        )
    return default


def _raise_bad_rows(path: Path, bad: list[str], advice: str) -> None:
    if bad:
        shown = "\n  ".join(bad[:MAX_BAD_ROWS_SHOWN])
        more = f"\n  ... and {len(bad) - MAX_BAD_ROWS_SHOWN} more" if len(bad) > MAX_BAD_ROWS_SHOWN else ""
        raise DataError(f"{path}: {len(bad)} bad row(s); {advice}:\n  {shown}{more}")


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image to uint8, (H, W) for grayscale or (H, W, 3) for colour; alpha is dropped."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found.")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: {img.width}x{img.height} pixels is over the limit; refusing a possible "
                                "decompression bomb.")
            return _to_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
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
    progress: Progress = plain,
) -> tuple[ImageBatch, np.ndarray]:
    """Load images and labels (Auto-Keras's function of the same name). ``progress`` wraps the files as
    they are read (the faces pass a progress bar; data knows nothing of consoles).

    Returns ``(x, y)``: ``x`` is one uint8 array (N, H, W[, 3]) when all images share a shape, else a
    list of arrays; ``y`` holds the labels as strings, as written in the CSV.
    """
    csv_path, folder = Path(csv_file_path), Path(images_path)
    names, labels = read_labels_csv(csv_path, filename_column, label_column)
    if not folder.is_dir():
        raise DataError(f"{folder}: images folder not found (named by {csv_path}).")
    images, bad = [], []
    for line_no, name in enumerate(progress(names, f"reading {csv_path.name}", "images"), start=2):
        try:
            images.append(read_image(resolve_image_path(folder, name)))
        except DataError as exc:
            bad.append(f"line {line_no}: {exc}")
    _raise_bad_rows(csv_path, bad, "fix the files or remove their rows")
    return stack_if_uniform(images), np.asarray(labels)


def stack_if_uniform(images: Sequence[np.ndarray]) -> ImageBatch:
    shapes = {img.shape for img in images}
    return np.stack(images) if len(shapes) == 1 else list(images)


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
