"""kill -9 in the middle of a search, then resume: nothing finished is trained again, nothing
half-written is loaded, the budget counts the time already spent. Real subprocesses, real SIGKILL."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from automl.search.records import Status
from automl.search.store import CandidateStore, load_weights
from tests.conftest import REPO, write_dataset

FIT = """
import sys, numpy as np
from automl import ImageClassifier, Params
path, data, resume = sys.argv[1], np.load(sys.argv[2]), sys.argv[3] == "resume"
params = Params().replace(**{"preprocess.image_size": 12, "train.max_epochs": 2, "train.threads": 1,
                             "search.max_candidates": 6, "search.strategy": "random", "seed": 4})
ImageClassifier(path=path, params=params, resume=resume).fit(data["x"], data["y"], time_limit=600)
print("done")
"""


def complete_ids(root: Path) -> list[int]:
    return [r.id for r in CandidateStore(root).records() if r.status is Status.COMPLETE]


def kill_after(proc: subprocess.Popen, root: Path, n_complete: int, timeout: float = 300) -> None:
    """SIGKILL ``proc`` once ``n_complete`` candidates are complete under ``root`` (polling its files)."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if (root / "candidates").is_dir() and len(complete_ids(root)) >= n_complete:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n_complete} complete candidates in time: {proc.communicate()}")


def snapshot(root: Path) -> dict[int, tuple[str, str]]:
    """Record text and weights hash of every complete candidate."""
    store = CandidateStore(root)
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    return {i: ((store.dir(i) / "record.json").read_text(), digest(store.weights_path(i))) for i in complete_ids(root)}


def start(args: list[str], cwd: Path = REPO) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: the kill reaches its threads too


def test_a_killed_fit_resumes_without_training_finished_candidates_again(tmp_path, digits):
    x, y = digits
    np.savez(tmp_path / "data.npz", x=x[::2], y=y[::2])
    root, script = tmp_path / "models", [sys.executable, "-c", FIT]
    proc = start([*script, str(root), str(tmp_path / "data.npz"), "new"])
    kill_after(proc, root, n_complete=2)

    before, spent = snapshot(root), CandidateStore(root).spent()
    for record in CandidateStore(root).records():  # whatever the kill cut, nothing loads as if complete
        if record.status is Status.COMPLETE:
            assert load_weights(CandidateStore(root).weights_path(record.id))

    out = subprocess.run([*script, str(root), str(tmp_path / "data.npz"), "resume"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "done" in out.stdout, out.stderr
    after = snapshot(root)
    assert all(after[i] == before[i] for i in before)  # same records, same weights: not trained again
    records = CandidateStore(root).records()
    assert [r.id for r in records] == [1, 2, 3, 4, 5, 6] and all(r.status.finished for r in records)
    assert not list(root.rglob("*.tmp"))  # what the kill left half-written was cleaned up or replaced
    assert CandidateStore(root).spent() > spent > 0
    log = (root / "search.log").read_text()
    assert f"search resumed: {len(before)} candidates kept" in log


@pytest.mark.slow
def test_a_killed_pipeline_resumes_into_the_same_mlflow_run(tmp_path, digits):
    csv_path, images = write_dataset(tmp_path / "data", *digits)
    cli = [sys.executable, "-m", "flows.cli", "run", "--quiet", "--csv", str(csv_path), "--images", str(images),
           "--set", "preprocess.image_size=12", "--set", "train.max_epochs=2", "--set", "train.threads=1",
           "--set", "search.max_candidates=5", "--set", "search.strategy=random", "--set", "final_fit.epochs=1",
           "--set", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    root = tmp_path / "artifacts" / "search"
    proc = start(cli, cwd=tmp_path)
    kill_after(proc, root, n_complete=2)
    before = snapshot(root)

    out = subprocess.run([*cli, "--resume"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and "Test accuracy" in out.stdout, out.stderr[-3000:]
    assert all(snapshot(root)[i] == before[i] for i in before)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("automl").experiment_id])
    parents = [r for r in runs if r.data.tags.get("automl.kind") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = sorted(int(r.data.tags["automl.candidate_id"]) for r in runs
                      if r.data.tags.get("automl.kind") == "candidate" and r.info.status == "FINISHED")
    assert finished == [1, 2, 3, 4, 5]  # each candidate once, the resumed ones in the same parent run
    assert all(r.info.status != "RUNNING" for r in runs)
    assert json.loads((root / "best.json").read_text())["n_candidates"] == 5
    run_log = (tmp_path / "reports" / parents[0].info.run_id / "run.log").read_text()  # the console, kept
    assert "Test accuracy" in run_log and f"Log: reports/{parents[0].info.run_id}/run.log" in out.stdout
