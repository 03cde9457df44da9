"""``dvc repro`` runs the stages of dvc.yaml (the same task bodies as the flow) on a user's own data; a
second run is a no-op; experiments line up with MLflow runs; ``dvc push`` / ``dvc pull`` hand data and
outputs to a teammate through a remote."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from automl.search.store import CLOCK_FILES
from tasks.search import SEARCH_RUN_FILE
from tasks.stages import STAGES
from tests.conftest import REPO, write_dataset

BIN = Path(sys.executable).parent


def test_dvc_yaml_has_one_stage_per_task_function():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(STAGES)
    assert all(body["cmd"] == f"automl stage {name}" for name, body in stages.items())


GIT_USER = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com"}


def sh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the project's own store
    env.update(GIT_USER, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def copy_code(source: Path, target: Path) -> None:
    (target / "artifacts").mkdir()
    for name in ("dvc.yaml", ".dvcignore", "pyproject.toml", ".gitignore", "artifacts/.gitignore"):
        shutil.copy(source / name, target / name)
    for folder in ("automl", "tasks", "flows", ".dvc"):
        shutil.copytree(source / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))


def pipeline_runs(project: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("automl")
    return client.search_runs([experiment.experiment_id], "tags.`automl.kind` = 'pipeline'")


@pytest.mark.slow
def test_dvc_on_your_own_data_experiments_and_a_teammate(tmp_path, digits):
    """Your own CSV + folder under DVC: ``dvc repro`` runs every stage, then nothing; each ``dvc exp run``
    (in the workspace or queued) is its own MLflow parent run in the project's store, tagged with its
    experiment and commit, and agrees with ``dvc exp show``; ``dvc repro --force`` of a search bounded by its
    candidate count (one torch thread) leaves ``dvc.lock`` byte-identical; a teammate pulls everything
    through a remote."""
    project = tmp_path / "project"
    project.mkdir()
    copy_code(REPO, project)
    write_dataset(project / "data" / "mine", *digits)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="", csv="data/mine/labels.csv", images="data/mine/images")
    params["preprocess"]["image_size"] = 12
    params["train"].update(max_epochs=1, threads=1)
    params["search"].update(time_limit=300, max_candidates=2)  # bounded by the count: reproducible bit for bit
    params["final_fit"]["epochs"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ok(sh("git", "init", "-q", cwd=project))

    first = ok(sh("dvc", "repro", cwd=project))
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    assert "/labels.csv" in (project / "data/mine/.gitignore").read_text()  # your data: versioned by DVC
    metrics = json.loads(ok(sh("dvc", "metrics", "show", "--json", cwd=project)).stdout)
    assert 0 <= next(iter(metrics.values()))["data"]["artifacts/metrics.json"]["data"]["test_accuracy"] <= 1
    plots = sh("dvc", "plots", "show", "--json", cwd=project).stdout
    assert all(name in plots for name in ("final_curves.csv", "trajectory.csv", "predictions.csv"))
    second = ok(sh("dvc", "repro", cwd=project))
    assert "Running stage" not in second.stdout and "up to date" in second.stdout

    lock = (project / "dvc.lock").read_text()
    forced = ok(sh("dvc", "repro", "--force", cwd=project))  # every stage again: every output hash the same
    assert all(f"Running stage '{stage}'" in forced.stdout for stage in STAGES)
    assert (project / "dvc.lock").read_text() == lock

    ok(sh("git", "add", "-A", cwd=project))
    ok(sh("git", "commit", "-qm", "pipeline", cwd=project))
    commit = ok(sh("git", "rev-parse", "HEAD", cwd=project)).stdout.strip()
    ok(sh("dvc", "exp", "run", "-n", "longer", "-S", "search.max_candidates=3", cwd=project))
    ok(sh("dvc", "exp", "run", "-n", "refit", "-S", "final_fit.epochs=2", cwd=project))  # reuses the search
    ok(sh("dvc", "exp", "run", "--queue", "-n", "queued", "-S", "search.max_candidates=1", cwd=project))
    ok(sh("dvc", "queue", "start", cwd=project))
    for _ in range(120):
        status = sh("dvc", "queue", "status", cwd=project).stdout
        if "queued" in status and ("Success" in status or "Failed" in status):
            break
        time.sleep(2)
    assert "Success" in status, status

    runs = {r.data.tags.get("automl.dvc_experiment"): r for r in pipeline_runs(project)}
    assert set(runs) == {None, "longer", "refit", "queued"}  # None: the first dvc repro
    assert all(r.data.tags["mlflow.source.git.commit"] == commit for name, r in runs.items() if name)
    assert all(r.info.status == "FINISHED" for r in runs.values())
    refit = runs["refit"]
    assert refit.data.params["final_fit.epochs"] == "2" and refit.data.params["search.max_candidates"] == "3"
    assert refit.data.tags["automl.search_run_id"] == runs["longer"].info.run_id  # the search it reused
    shown = {e["name"]: e for row in json.loads(ok(sh("dvc", "exp", "show", "--json", cwd=project)).stdout)
             for e in (row.get("experiments") or []) for e in [e["revs"][0]]}
    for name in ("longer", "refit", "queued"):
        exp_metrics = shown[name]["data"]["metrics"]["artifacts/metrics.json"]["data"]
        assert runs[name].data.metrics["test_accuracy"] == pytest.approx(exp_metrics["test_accuracy"])
    assert not (project / ".dvc" / "tmp" / "exps" / "mlflow.db").exists()

    # hand-off: push to a remote (a local folder here; S3 or GCS is only other config), a teammate
    # with the git files alone pulls data and outputs and finds everything up to date
    ok(sh("dvc", "remote", "add", "-d", "team", str(tmp_path / "remote"), cwd=project))
    ok(sh("dvc", "push", cwd=project))
    ok(sh("git", "add", "-A", cwd=project))
    ok(sh("git", "commit", "-qm", "hand-off", cwd=project))
    teammate = tmp_path / "teammate"
    ok(sh("git", "clone", "-q", str(project), str(teammate), cwd=tmp_path))
    ok(sh("dvc", "pull", cwd=teammate))
    for path in ("exported/model.onnx", "artifacts/final/weights.pt", "data/mine/labels.csv"):
        assert (teammate / path).read_bytes() == (project / path).read_bytes()
    status = ok(sh("dvc", "status", cwd=teammate))
    assert "up to date" in status.stdout


def test_the_project_dvcignore_names_every_clock_file_of_the_search():
    """What only the clock decides stays out of DVC's hash, so a bounded search re-run hashes the same."""
    patterns = (REPO / ".dvcignore").read_text().splitlines()
    assert all(f"**/search/{name}" in patterns for name in (*CLOCK_FILES, SEARCH_RUN_FILE))
