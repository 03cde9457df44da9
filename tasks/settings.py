"""The pipeline's own settings, on the pipeline's side: where the data is, MLflow tracking, the task
runner and output paths. ``PipelineParams`` extends the library's ``Params`` with them; together they
mirror ``params.yaml`` section by section."""

from __future__ import annotations

from dataclasses import dataclass, field

from automl.config import Params
from automl.errors import ConfigError

RUNNERS = ("thread", "process", "dask")


@dataclass(frozen=True)
class DataConfig:
    """Where the labelled images are. ``source`` names the embedded dataset that ingest writes into
    ``data/<source>/`` (the defaults of ``csv`` and ``images`` point there); empty writes nothing."""

    source: str = "mnist5k"
    csv: str = "data/mnist5k/labels.csv"
    images: str = "data/mnist5k/images"
    filename_column: str = ""  # empty: the CSV's first column
    label_column: str = ""  # empty: the CSV's second column
    duplicates: str = "error"  # error | drop: a file or image (same bytes) listed twice


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow. An empty ``uri`` means ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here. The
    final model is registered as ``registered_model`` (empty: not registered), with the alias
    ``champion`` when it beats the current champion on the same test split, else ``challenger``."""

    uri: str = ""
    experiment: str = "automl"
    registered_model: str = "automl-image-classifier"


@dataclass(frozen=True)
class RunnerConfig:
    """Where the flow trains its candidate tasks (a Prefect task runner): ``thread`` (the flow's own
    process), ``process`` (a local process pool) or ``dask`` (a Dask LocalCluster, or the running
    scheduler at ``address``). ``workers``: processes of the local pool or cluster, each training one
    candidate at a time (0 = ``search.parallel``). Process and Dask workers fetch the data and the
    parents' weights from the MLflow artifact store, so remote workers need no shared disk."""

    kind: str = "thread"
    address: str = ""  # tcp://host:8786 of a Dask scheduler ('' = start a LocalCluster)
    workers: int = 0


@dataclass(frozen=True)
class PathsConfig:
    """Where pipeline stages write: ``work`` for intermediate outputs, ``export`` for the hand-off,
    ``reports`` for each run's ``<run id>/report.html`` and its pictures."""

    work: str = "artifacts"
    export: str = "exported"
    reports: str = "reports"


@dataclass(frozen=True)
class PipelineParams(Params):
    """Every knob of a pipeline run: the library's params plus the pipeline's sections."""

    data: DataConfig = field(default_factory=DataConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (self.runner.kind in RUNNERS, f"runner.kind must be one of {', '.join(RUNNERS)}"),
            (not self.runner.address or self.runner.kind == "dask",
             "runner.address is a Dask scheduler: set runner.kind=dask"),
            (self.runner.workers >= 0, "runner.workers must be >= 0 (0 = search.parallel)"),
            (self.data.duplicates in ("error", "drop"), "data.duplicates must be error or drop"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
