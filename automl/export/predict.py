"""Predict labels for image files with an exported model (``model.torchscript.pt`` + ``labels.json``),
the files ``automl run`` writes to ``paths.export`` and logs to MLflow. Only torch, numpy and Pillow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    def predict_file(self, path: Path) -> Prediction:
        x = torch.from_numpy(image_to_chw(read_image(path)))[None]
        with torch.no_grad():
            probs = self.module(x)[0]
        best = int(probs.argmax())
        return Prediction(path, self.labels[best], float(probs[best]))


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
