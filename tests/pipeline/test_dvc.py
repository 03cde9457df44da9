"""``dvc repro`` runs the stages of dvc.yaml (the same task bodies as the flow); a second run is a no-op;
``dvc push`` / ``dvc pull`` hand data and outputs to a teammate through a remote."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.stages import STAGES
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def sh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)


def test_dvc_yaml_has_one_stage_per_task_function():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(STAGES)
    assert all(body["cmd"] == f"automl stage {name}" for name, body in stages.items())


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline_then_nothing_and_a_teammate_pulls_it(tmp_path):
    for name in ("dvc.yaml", ".dvcignore", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    for folder in ("automl", "tasks", "flows", ".dvc"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["preprocess"]["image_size"] = 12
    params["train"].update(max_epochs=1, threads=2)
    params["search"]["time_limit"] = 10
    params["final_fit"]["epochs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert sh("git", "init", "-q", cwd=tmp_path).returncode == 0

    first = sh("dvc", "repro", cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    metrics = json.loads(sh("dvc", "metrics", "show", "--json", cwd=tmp_path).stdout)
    values = next(iter(metrics.values()))["data"]["artifacts/metrics.json"]["data"]
    assert 0.2 < values["test_accuracy"] <= 1  # 5,000 real digits, one epoch at 12x12
    assert len((tmp_path / "data/mnist5k/labels.csv").read_text().splitlines()) == 5001
    assert (tmp_path / "exported/model.onnx").exists()
    plots = sh("dvc", "plots", "show", "--json", cwd=tmp_path).stdout
    assert all(name in plots for name in ("curves.csv", "trajectory.csv", "predictions.csv"))

    second = sh("dvc", "repro", cwd=tmp_path)
    assert second.returncode == 0 and "Running stage" not in second.stdout
    assert "up to date" in second.stdout

    # hand-off: push to a remote (a local folder here; S3 or GCS is only other config), a teammate
    # with the git files alone pulls data and outputs and finds everything up to date
    assert sh("dvc", "remote", "add", "-d", "team", str(tmp_path.parent / "remote"), cwd=tmp_path).returncode == 0
    pushed = sh("dvc", "push", cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    teammate = tmp_path.parent / "teammate"
    teammate.mkdir()
    in_git = ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore", "pyproject.toml",
              "artifacts/metrics.json", "artifacts/final/curves.csv",  # metrics and plots: cache: false, in git
              "artifacts/report/trajectory.csv", "artifacts/report/predictions.csv")
    for name in in_git:
        (teammate / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, teammate / name)
    for folder in ("automl", "tasks", "flows", ".dvc"):
        shutil.copytree(tmp_path / folder, teammate / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    assert sh("git", "init", "-q", cwd=teammate).returncode == 0
    pulled = sh("dvc", "pull", cwd=teammate)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    for path in ("exported/model.onnx", "artifacts/final/weights.pt", "data/mnist5k/labels.csv"):
        assert (teammate / path).read_bytes() == (tmp_path / path).read_bytes()
    status = sh("dvc", "status", cwd=teammate)
    assert status.returncode == 0 and "up to date" in status.stdout
