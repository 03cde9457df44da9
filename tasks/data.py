"""Ingest, split and preprocess: data in ``data/``, intermediate outputs under ``paths.work``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from automl.data.embedded import write_default_dataset
from automl.data.images import load_image_dataset, plain, read_labels_csv
from automl.data.preprocess import Preprocessor
from automl.data.split import stratified_split
from automl.errors import DataError
from automl.fileio import atomic_path, read_json, write_json
from automl.report.progress import bar
from automl.training.protocol import image_size_for
from automl.training.trainer import TensorData
from tasks.settings import PipelineParams

SPLITS = ("train", "val", "test")
DATA_ROOT = "data"


def work_dir(params: PipelineParams, *parts: str) -> Path:
    return Path(params.paths.work, *parts)


@task(name="ingest", cache_policy=NO_CACHE)
def ingest(params: PipelineParams, quiet: bool = False) -> dict[str, Any]:
    """Write the embedded dataset ``data.source`` into ``data/<source>/`` unless it is there, then
    check that the dataset the run uses (``data.csv``, which may be the user's own) is readable."""
    if params.data.source:
        target = embedded_dir(params.data.source)
        if not (target / "labels.csv").exists():
            write_default_dataset(params.data.source, target / "labels.csv", target / "images",
                                  plain if quiet else bar)
    names, labels = read_labels_csv(params.data.csv, params.data.filename_column, params.data.label_column)
    return {"csv": params.data.csv, "images": params.data.images, "n_images": len(names),
            "n_classes": len(set(labels))}


def embedded_dir(source: str) -> Path:
    return Path(DATA_ROOT, source)


@task(name="split", cache_policy=NO_CACHE)
def split(params: PipelineParams) -> dict[str, int]:
    """Stratified, seeded split of the CSV's rows into train/val/test CSVs of the same format."""
    names, labels = read_labels_csv(params.data.csv, params.data.filename_column, params.data.label_column)
    test_idx, val_idx, train_idx = stratified_split(
        labels, [params.split.test_fraction, params.split.val_fraction], params.seed)
    counts = {}
    for name, idx in zip(("test", "val", "train"), (test_idx, val_idx, train_idx)):
        with atomic_path(work_dir(params, "split", f"{name}.csv")) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "label"])
            writer.writerows((names[i], labels[i]) for i in idx)
        counts[name] = len(idx)
    return counts


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(params: PipelineParams, quiet: bool = False) -> dict[str, Any]:
    """Decode and resize every image once; normalize with training-split statistics; save tensors."""
    progress = plain if quiet else bar
    raw = {s: load_image_dataset(work_dir(params, "split", f"{s}.csv"), params.data.images, progress=progress)
           for s in SPLITS}
    images, labels = raw["train"]
    pre = Preprocessor.fit(images, labels, image_size_for(params.preprocess.image_size, list(images), params.train))
    out = work_dir(params, "preprocessed")
    for name, (x, y) in raw.items():
        with atomic_path(out / f"{name}.npz") as tmp, tmp.open("wb") as handle:
            np.savez(handle, x=pre.transform(x).numpy(), y=pre.encode(y).numpy())
    write_json(out / "preprocessor.json", pre.to_dict())
    return {"classes": pre.classes, "channels": pre.channels, "image_size": pre.image_size}


def load_preprocessor(params: PipelineParams) -> Preprocessor:
    return Preprocessor.from_dict(read_json(work_dir(params, "preprocessed", "preprocessor.json")))


def load_split(work: str | Path, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(Path(work, "preprocessed", f"{name}.npz"), allow_pickle=False) as data:
        return torch.from_numpy(data["x"]), torch.from_numpy(data["y"])


def load_tensors(work: str | Path, train: tuple[str, ...] = ("train",), val: str | None = "val") -> TensorData:
    """Training tensors from the named splits (concatenated) and an optional validation split."""
    parts = [load_split(work, name) for name in train]
    x_val, y_val = load_split(work, val) if val else (None, None)
    return TensorData(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), x_val, y_val)


def check_user_data(params: PipelineParams) -> None:
    """Fail fast, before any server starts, when the user's own CSV or image folder is unusable."""
    if not params.data.source:
        read_labels_csv(params.data.csv, params.data.filename_column, params.data.label_column)
        if not Path(params.data.images).is_dir():
            raise DataError(f"{params.data.images}: images folder not found (named by data.images).")
