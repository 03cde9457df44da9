"""Predict labels for image files with an exported model (``model.torchscript.pt`` + ``labels.json``),
the files ``automl run`` writes to ``paths.export`` and logs to MLflow. Only torch, numpy and Pillow."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.data.images import read_image
from automl.data.preprocess import image_to_chw
from automl.errors import DataError
from automl.export.model import LABELS_FILE, TORCHSCRIPT_FILE, read_labels

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclass(frozen=True)
class Prediction:
    path: Path
    label: Any
    probability: float


class ExportedModel:
    """The exported network with its preprocessing built in: raw pixels in, probabilities out."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        places = (folder, folder / "artifacts")  # an export folder, or an MLflow model's folder
        found = {name: [p / name for p in places if (p / name).is_file()] for name in (TORCHSCRIPT_FILE, LABELS_FILE)}
        missing = [name for name, paths in found.items() if not paths]
        if missing:
            raise DataError(f"{folder}: no {' or '.join(missing)} in it; pass the export folder of a run "
                            "(paths.export, e.g. exported/) or a models:/ URI.")
        self.module = torch.jit.load(str(found[TORCHSCRIPT_FILE][0]), map_location="cpu").eval()
        self.labels = read_labels(found[LABELS_FILE][0])

    def predict_files(self, paths: list[Path], batch_size: int = 256) -> Iterator[Prediction]:
        """Predictions in the order of ``paths``, ``batch_size`` files read at a time and those of one
        shape run as one batch (one forward pass per file made a folder of images slow)."""
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            arrays = [image_to_chw(read_image(path)) for path in chunk]
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, arr in enumerate(arrays):
                groups.setdefault(arr.shape, []).append(i)
            found: list[Prediction | None] = [None] * len(chunk)
            with torch.no_grad():
                for idx in groups.values():
                    probs = self.module(torch.from_numpy(np.stack([arrays[i] for i in idx])))
                    best = probs.argmax(1)
                    for row, i in enumerate(idx):
                        found[i] = Prediction(chunk[i], self.labels[int(best[row])], float(probs[row, best[row]]))
            yield from (f for f in found if f is not None)


def image_files(inputs: list[str | Path]) -> list[Path]:
    """The files named, and the image files (by suffix) directly inside the folders named, in order."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            inside = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not inside:
                raise DataError(f"{item}: no image files in this folder ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            files.extend(inside)
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item}: no such file or folder.")
    return files
