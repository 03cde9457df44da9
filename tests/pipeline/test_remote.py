"""Workers' data: downloaded once per machine and content, and removed when no worker has used it."""

import os
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from tasks.remote import DATA_ARTIFACTS, DIGEST_TAG, UNUSED_SECONDS, data_folder, files_digest


def test_runs_on_the_same_data_share_one_download_and_stale_downloads_are_removed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "artifacts").as_uri())
    files = [tmp_path / "train.npy", tmp_path / "val.npy"]
    for i, path in enumerate(files):
        path.write_bytes(bytes([i]) * 100)
    digest = files_digest(files)
    runs = []
    for _ in range(2):
        run = client.create_run(experiment).info.run_id
        for path in files:
            client.log_artifact(run, str(path), DATA_ARTIFACTS)
        client.set_tag(run, DIGEST_TAG, digest)
        runs.append(run)
    root = tmp_path / "automl-data"
    stale, fresh = root / ("0" * 64), root / ("1" * 64)
    for folder, age in ((stale, UNUSED_SECONDS + 60), (fresh, 60)):
        folder.mkdir(parents=True)
        os.utime(folder, (time.time() - age, time.time() - age))
    first = data_folder(uri, runs[0], root)
    assert first == root / digest and (first / "preprocessed" / "val.npy").read_bytes() == bytes([1]) * 100
    assert not stale.exists() and fresh.exists()
    inode = first.stat().st_ino
    second = data_folder(uri, runs[1], root)  # another run, same content: no second download
    assert second == first and second.stat().st_ino == inode
    assert sorted(p.name for p in root.iterdir()) == sorted([digest, fresh.name])
    files[1].write_bytes(b"changed")
    assert files_digest(files) != digest


def test_the_digest_covers_names_as_well_as_contents(tmp_path):
    a, b = Path(tmp_path / "a"), Path(tmp_path / "b")
    a.write_bytes(b"x"), b.write_bytes(b"x")
    assert files_digest([a]) != files_digest([b])
