"""``automl serve --cron``: a Prefect deployment of the pipeline with its schedule and params, whose runs
(started here on demand through the deployment) complete."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tasks.settings import PipelineParams
from tests.conftest import REPO


def read_deployment(name: str, timeout: float, proc: subprocess.Popen):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    end = time.time() + timeout
    with get_client(sync_client=True) as client:
        while time.time() < end:
            if proc.poll() is not None:
                raise AssertionError(f"automl serve exited: {proc.communicate()}")
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(1)
    raise AssertionError(f"deployment {name} not registered in {timeout} s")


def run_log(flow_run_id, timeout: float = 30) -> list[str]:
    """The flow run's log lines in Prefect (the worker sends them in batches: wait for some)."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    end = time.time() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if any("[search]" in log.message for log in logs) or time.time() > end:
                return [log.message for log in logs]
            time.sleep(1)


@pytest.mark.slow
def test_serve_registers_a_scheduled_deployment_whose_runs_complete(prefect_harness, digits_on_disk, tmp_path):
    from mlflow.tracking import MlflowClient
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    csv_path, images = digits_on_disk
    params = PipelineParams().replace(**{
        "data.source": "", "data.csv": str(csv_path), "data.images": str(images), "preprocess.image_size": 12,
        "train.max_epochs": 1, "train.threads": 2, "search.time_limit": 10, "search.max_candidates": 2,
        "final_fit.epochs": 1, "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.to_dict()))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "2",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--cron", "0 2 * * *", "--timezone",
                             "Europe/Berlin", "--name", "nightly"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deployment = read_deployment("automl-pipeline/nightly", 180, proc)
        assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [("0 2 * * *",
                                                                                           "Europe/Berlin")]
        assert deployment.parameters["params"]["tracking"]["uri"] == ""  # it may carry a password
        assert all(s.active for s in deployment.schedules)
        assert deployment.parameters["params"]["search"]["time_limit"] == 10
        run = run_deployment("automl-pipeline/nightly", timeout=600,  # one key changed, the rest kept
                             parameters={"overrides": {"search.max_candidates": 1}})
        assert run.state.is_completed(), run.state
        assert (tmp_path / "exported" / "model.onnx").exists()
        assert any("[search]" in line for line in run_log(run.id))  # progress in the run's log (log_prints)
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        parent, = client.search_runs([client.get_experiment_by_name("automl").experiment_id],
                                     "tags.`automl.kind` = 'pipeline'")
        assert parent.data.params["search.max_candidates"] == "1" and parent.data.metrics["n_candidates"] == 1
        assert parent.data.params["data.csv"].endswith("labels.csv") and parent.data.params["data.source"] == ""
        partial = run_deployment("automl-pipeline/nightly", timeout=120,  # would silently drop the data
                                 parameters={"params": {"search": {"time_limit": 5}}})
        assert partial.state.is_failed()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
