"""The Prefect task runner that trains a search's candidates, chosen by the ``runner`` params.

Only the candidate tasks go to it: the flow's other steps are short and run in the flow's process.
Workers of a local pool share the cores (``train.threads`` 0 becomes cores / workers), and with
GPUs each candidate of a round takes its own (``automl.training.device.place``), so run one worker per GPU.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from automl.errors import ConfigError
from tasks.settings import PipelineParams


def workers(params: PipelineParams) -> int:
    return params.runner.workers or params.search.parallel


def task_runner(params: PipelineParams) -> TaskRunner:
    """A new (not yet started) task runner for ``params.runner``."""
    kind = params.runner.kind
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=params.search.parallel)
    if kind == "process":
        return ProcessPoolTaskRunner(max_workers=workers(params))
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError("runner.kind=dask needs prefect-dask: pip install -e '.[dask]'") from None
    if params.runner.address:
        return DaskTaskRunner(address=params.runner.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers(params), "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def shares_disk(params: PipelineParams) -> bool:
    """Whether candidate tasks may read and write the driver's files (threads of its own process)."""
    return params.runner.kind == "thread"


def worker_params(params: PipelineParams) -> PipelineParams:
    """The params candidate tasks get: with a local pool of processes, each takes its share of the
    cores unless ``train.threads`` says otherwise (a remote worker keeps its machine's default)."""
    if params.runner.kind == "thread" or params.runner.address or params.train.threads:
        return params
    share = max(1, (os.cpu_count() or 1) // workers(params))
    return dataclasses.replace(params, train=dataclasses.replace(params.train, threads=share))


@contextmanager
def candidate_runner(params: PipelineParams) -> Iterator[TaskRunner]:
    """The started task runner for a search, its workers ready before the search's clock starts."""
    with _workers_share_prefect_api(params):
        with task_runner(params) as runner:
            if params.runner.kind == "dask":
                logging.getLogger("distributed").setLevel(logging.WARNING)  # not a line per worker event
                runner.client.run(_warm_up)  # starts the cluster; imports torch and mlflow once per worker
            yield runner


def _warm_up() -> None:
    import tasks.remote  # noqa: F401  (torch, mlflow, prefect's task engine)


@contextmanager
def _workers_share_prefect_api(params: PipelineParams) -> Iterator[None]:
    """Without ``PREFECT_API_URL`` Prefect runs a temporary server per process, so each worker
    process would start its own (seconds each, and its task runs would not show in this flow run).
    Local workers inherit the environment: point them at this process's server while they run."""
    if params.runner.kind == "thread" or get_current_settings().api.url:
        yield
        return
    os.environ["PREFECT_API_URL"] = str(get_client(sync_client=True).api_url)
    try:
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
