"""Which Prefect task runner trains the candidates, and what its workers are given."""

import os

import pytest
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from automl.errors import ConfigError
from flows.runners import shares_disk, task_runner, worker_params
from tasks.settings import PipelineParams


def test_each_kind_builds_its_prefect_task_runner_with_one_worker_per_parallel_candidate():
    params = PipelineParams().replace(**{"search.parallel": 3})
    thread = task_runner(params)
    assert isinstance(thread, ThreadPoolTaskRunner) and thread._max_workers == 3 and shares_disk(params)
    process = task_runner(params.replace(**{"runner.kind": "process", "runner.workers": 2}))
    assert isinstance(process, ProcessPoolTaskRunner) and process._max_workers == 2
    local = task_runner(params.replace(**{"runner.kind": "dask"}))
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 3
    assert local.cluster_kwargs["threads_per_worker"] == 1  # one candidate at a time per worker
    remote = params.replace(**{"runner.kind": "dask", "runner.address": "tcp://10.0.0.5:8786"})
    assert task_runner(remote).address == "tcp://10.0.0.5:8786" and not shares_disk(remote)


def test_local_workers_share_the_cores_unless_threads_are_set():
    params = PipelineParams().replace(**{"runner.kind": "process", "runner.workers": 2})
    assert worker_params(params).train.threads == max(1, (os.cpu_count() or 1) // 2)
    assert worker_params(params.replace(**{"train.threads": 3})).train.threads == 3
    remote = PipelineParams().replace(**{"runner.kind": "dask", "runner.address": "tcp://10.0.0.5:8786"})
    assert worker_params(remote).train.threads == 0  # a remote worker uses its own machine's cores
    assert worker_params(PipelineParams()) == PipelineParams()


@pytest.mark.parametrize("overrides, message", [
    ({"runner.kind": "ray"}, "runner.kind must be one of thread, process, dask"),
    ({"runner.address": "tcp://10.0.0.5:8786"}, "set runner.kind=dask"),
    ({"runner.workers": -1}, "runner.workers must be >= 0"),
])
def test_bad_runner_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        PipelineParams().replace(**overrides)
