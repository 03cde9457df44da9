"""Ingest, split and preprocess: data in ``data/``, intermediate outputs under ``paths.work``."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from automl.data.embedded import write_default_dataset
from automl.data.images import ImageFiles, Progress, plain
from automl.data.labels import Row, read_labels_csv
from automl.data.pixels import Moments, Pixels, open_cache, write_cache
from automl.data.preprocess import CHUNK, Preprocessor, decode_chunk, pixel_stream, survey
from automl.data.split import stratified_split
from automl.data.validate import CheckedDataset, check_dataset
from automl.fileio import atomic_path, read_json, write_json, write_npz
from automl.report.progress import bar
from automl.training.protocol import auto_image_size
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


def check_user_data(params: PipelineParams, progress: Progress = plain) -> CheckedDataset:
    """Every problem of the dataset ``params`` names, reported at once by the user's CSV line (before
    any Prefect task when the CLI runs it), or the rows the run uses."""
    return check_dataset(params.data.csv, params.data.images, filename_column=params.data.filename_column,
                         label_column=params.data.label_column, duplicates=params.data.duplicates,
                         fractions=(params.split.test_fraction, params.split.val_fraction), progress=progress)


@task(name="split", cache_policy=NO_CACHE)
def split(params: PipelineParams) -> dict[str, int]:
    """Check the dataset, then split its rows (stratified, seeded) into train/val/test CSVs of the same
    format plus the user's CSV line of each row, so a later problem with an image names that line."""
    checked = check_user_data(params)
    if checked.notes:
        print(f"[split] {len(checked.notes)} duplicate row(s) of {checked.csv} dropped (data.duplicates=drop), "
              f"the first: {checked.notes[0]}", file=sys.stderr, flush=True)
    rows = checked.rows
    test_idx, val_idx, train_idx = stratified_split(
        [r.label for r in rows], [params.split.test_fraction, params.split.val_fraction], params.seed)
    counts = {}
    for name, idx in zip(("test", "val", "train"), (test_idx, val_idx, train_idx)):
        with atomic_path(work_dir(params, "split", f"{name}.csv")) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "label", "line"])
            writer.writerows((rows[i].name, rows[i].label, rows[i].line) for i in idx)
        counts[name] = len(idx)
    return counts


def split_rows(params: PipelineParams, name: str) -> list[Row]:
    """The rows of one split, each with its line in the user's CSV."""
    with work_dir(params, "split", f"{name}.csv").open(newline="") as handle:
        return [Row(int(r["line"]), r["filename"], r["label"]) for r in csv.DictReader(handle)]


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(params: PipelineParams, quiet: bool = False) -> dict[str, Any]:
    """Decode, convert and resize every image once, a chunk at a time, into a uint8 pixel cache per split
    (``preprocessed/<split>.npy``, read a batch at a time by training) with its labels; normalization statistics
    from the training split only. Memory stays within a chunk of decoded images whatever the dataset."""
    progress = plain if quiet else bar
    rows = {s: split_rows(params, s) for s in SPLITS}
    files = {name: ImageFiles(tuple(split), Path(params.data.images), Path(params.data.csv))
             for name, split in rows.items()}
    channels, native = survey(files["train"].chunks(CHUNK, progress, f"surveying {params.data.csv}"))
    size = params.preprocess.image_size or auto_image_size(native, len(rows["train"]), params.train)
    out, moments = work_dir(params, "preprocessed"), Moments()
    decode = decode_chunk(native, size)
    for name, split in files.items():
        chunks = pixel_stream(split.chunks(decode, progress, f"caching {name} pixels"), channels, size)
        if name == "train":
            chunks = map(moments.add, chunks)
        with atomic_path(out / f"{name}.npy") as tmp:
            write_cache(tmp, (len(split), channels, size, size), chunks)
    mean, std = moments.result()
    pre = Preprocessor.of([r.label for r in rows["train"]], size, channels, mean, std)
    for name, split in rows.items():
        write_npz(out / f"{name}_labels.npz", y=pre.encode([r.label for r in split]).numpy())
    write_json(out / "preprocessor.json", pre.to_dict())
    return {"classes": pre.classes, "channels": pre.channels, "image_size": pre.image_size}


def load_preprocessor(params: PipelineParams) -> Preprocessor:
    return Preprocessor.from_dict(read_json(work_dir(params, "preprocessed", "preprocessor.json")))


def load_split(work: str | Path, name: str) -> tuple[Pixels, torch.Tensor]:
    """One split's pixel cache (in RAM when small, else read from disk a batch at a time; normalized as
    it is read) and its class indices."""
    folder = Path(work, "preprocessed")
    pre = Preprocessor.from_dict(read_json(folder / "preprocessor.json"))
    return Pixels((open_cache(folder / f"{name}.npy"),), tuple(pre.mean), tuple(pre.std)), load_labels(work, name)


def load_labels(work: str | Path, name: str) -> torch.Tensor:
    """One split's class indices, without its pixels."""
    with np.load(Path(work, "preprocessed", f"{name}_labels.npz"), allow_pickle=False) as data:
        return torch.from_numpy(data["y"])


def load_tensors(work: str | Path, train: tuple[str, ...] = ("train",), val: str | None = "val") -> TensorData:
    """Training data from the named splits (joined, not copied) and an optional validation split."""
    parts = [load_split(work, name) for name in train]
    x_val, y_val = load_split(work, val) if val else (None, None)
    x = parts[0][0]
    for more, _ in parts[1:]:
        x = x.joined(more)
    return TensorData(x, torch.cat([p[1] for p in parts]), x_val, y_val)
