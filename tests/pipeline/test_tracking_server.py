"""A shared tracking server: a real ``mlflow server`` on a loopback port, the pipeline and its candidate
tasks logging to it over HTTP through ``MLFLOW_TRACKING_URI``, artifacts proxied into its artifact root."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.settings import PipelineParams

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited: {proc.communicate()[1][-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}", tmp_path / "server-artifacts"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker, by the PID we started
        proc.wait(timeout=60)


@pytest.mark.slow
def test_the_pipeline_logs_to_a_tracking_server_over_http(prefect_harness, mlflow_server, digits_on_disk,
                                                          tmp_path, monkeypatch):
    from flows.pipeline import run_pipeline

    uri, artifact_root = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    csv_path, images = digits_on_disk
    params = PipelineParams().replace(**{
        "data.source": "", "data.csv": str(csv_path), "data.images": str(images), "preprocess.image_size": 12,
        "train.max_epochs": 1, "train.threads": 2, "search.time_limit": 15, "search.max_candidates": 3,
        "final_fit.epochs": 1, "paths.work": str(tmp_path / "artifacts"), "paths.export": str(tmp_path / "exported"),
        "paths.reports": str(tmp_path / "reports")})
    result = run_pipeline(params, quiet=True)

    client = MlflowClient(uri)
    parent = client.get_run(result["export"]["run_id"])
    assert parent.info.status == "FINISHED" and "test_accuracy" in parent.data.metrics
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == result["search"]["n_candidates"] >= 1
    assert {"weights.pt", "graph.json"} <= {a.path for a in client.list_artifacts(children[0].info.run_id)}
    assert list(artifact_root.rglob("weights.pt"))  # stored by the server, not in the client's folder
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied through the server's HTTP API
    champion = client.get_model_version_by_alias(params.tracking.registered_model, "champion")
    assert champion.run_id == parent.info.run_id
