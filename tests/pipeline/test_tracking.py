"""MLflow at the edge: a failed candidate is a failed nested run with its error, the search goes on;
params never carry a password or a user's absolute paths."""

from pathlib import Path

from mlflow.tracking import MlflowClient

from automl.search.loop import SearchStart, run_search
from automl.search.records import Status
from automl.search.store import CandidateStore
from automl.search.strategies import make_searcher
from automl.session import train_and_record
from automl.training.trainer import TensorData
from tasks import tracking
from tests.training.test_trainer import bars


class OutOfMemoryOn:
    """A callback that raises what PyTorch raises when memory runs out, inside one candidate's training."""

    def __init__(self, candidate_id: int) -> None:
        self.candidate_id = candidate_id

    def on_candidate_start(self, candidate) -> None: ...

    def on_epoch(self, candidate, info) -> None:
        if candidate.id == self.candidate_id:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def on_candidate_end(self, candidate, record, weights_path) -> None: ...


def test_a_failing_candidate_is_a_failed_run_with_its_error_and_the_search_goes_on(tiny_params, tmp_path):
    params = tiny_params.replace(**{"train.max_epochs": 1, "train.batch_size": 32})
    parent = tracking.start_parent_run(params)
    store = CandidateStore(tmp_path / "search")
    searcher = make_searcher("random", (1, 10, 10), 2, seed=0)
    data = TensorData(*bars(120, 0), *bars(40, 1))
    callbacks = [tracking.MlflowCandidateLogger(params, parent), OutOfMemoryOn(2)]

    def train_batch(candidates, deadline):
        return [train_and_record(c, store, data, params.train, seed=0, deadline=deadline, callbacks=callbacks)
                for c in candidates]

    limit_before = searcher.memory_limit_mb
    summary = run_search(SearchStart(searcher, [], 0.0, False), train_batch, store, time_limit=120, max_candidates=4)
    assert summary.n_candidates == 4 and summary.n_failed == 1 and summary.best is not None
    failed = store.record(2)
    assert failed.status is Status.FAILED and "out of memory" in failed.error and failed.out_of_memory
    assert searcher.memory_limit_mb < limit_before  # told: nothing that large is proposed again

    client = MlflowClient(tracking.tracking_uri(params))
    runs = {r.data.tags["automl.candidate_id"]: r for r in client.search_runs(
        [client.get_run(parent).info.experiment_id], f"tags.`{tracking.PARENT_TAG}` = '{parent}'")}
    assert {k: r.info.status for k, r in runs.items()} == {"1": "FINISHED", "2": "FAILED", "3": "FINISHED",
                                                           "4": "FINISHED"}
    error = Path(client.download_artifacts(runs["2"].info.run_id, "error.txt", str(tmp_path)))
    assert "RuntimeError: CUDA out of memory" in error.read_text()


def test_params_in_mlflow_have_no_password_and_no_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flat = {"data.csv": str(tmp_path / "data" / "labels.csv"), "data.images": "/home/alice/photos/cats",
            "tracking.uri": "https://alice:s3cret@mlflow.example.com", "search.time_limit": 60.0}
    shown = tracking.loggable_params(flat)
    assert shown == {"data.csv": "data/labels.csv", "data.images": ".../cats", "search.time_limit": 60.0}


def test_each_pipeline_run_logs_into_its_own_parent_run_and_a_rerun_stage_starts_a_new_one(tiny_params):
    """The stages of one run (separate processes under DVC) share the recorded parent run; a stage that
    already logged into it means a new pipeline run (a DVC experiment reusing the search): a new parent
    run naming the search's run, with its summary and the test metrics as they stand."""
    client = MlflowClient(tiny_params.tracking.uri)
    search_run = tracking.start_parent_run(tiny_params)
    search = {"parent_run_id": search_run, "best_id": 3, "best_val_accuracy": 0.9, "n_candidates": 4,
              "n_failed": 0, "search_seconds": 12.0}
    assert tracking.open_parent_run(tiny_params, "final_fit", search) == search_run
    assert tracking.open_parent_run(tiny_params, "evaluate", search) == search_run
    tracking.settle_stage(tiny_params, "evaluate", "FINISHED")
    assert client.get_run(search_run).info.status == "FINISHED"

    again = tracking.open_parent_run(tiny_params, "final_fit", search, {"test_accuracy": 0.8,
                                                                       "per_class_accuracy": {"a b": 0.7}})
    run = client.get_run(again)
    assert again != search_run and run.data.tags["automl.search_run_id"] == search_run
    assert run.data.metrics == {"search_best_val_accuracy": 0.9, "best_candidate_id": 3, "n_candidates": 4,
                                "n_failed": 0, "search_seconds": 12.0, "test_accuracy": 0.8,
                                "test_accuracy.a b": 0.7}
    assert tracking.open_parent_run(tiny_params, "export", search) == again
    tracking.settle_stage(tiny_params, "search", "FAILED")  # not a stage of this run: nothing changes
    assert client.get_run(again).info.status == "RUNNING"


def test_a_run_whose_evaluate_dvc_restored_from_its_run_cache_still_gets_the_test_accuracy(tiny_params):
    """A deterministic search and final fit can give a model DVC has evaluated before: ``evaluate`` is
    skipped, and the report stage logs the (restored) ``metrics.json`` into the run instead."""
    client = MlflowClient(tiny_params.tracking.uri)
    search_run = tracking.start_parent_run(tiny_params)
    search = {"parent_run_id": search_run, "best_id": 1, "best_val_accuracy": 0.9, "n_candidates": 1,
              "n_failed": 0, "search_seconds": 3.0}
    evaluation = {"test_accuracy": 0.75, "per_class_accuracy": {"a": 0.5}}
    assert tracking.open_parent_run(tiny_params, "final_fit", search, evaluation) == search_run
    assert "test_accuracy" not in client.get_run(search_run).data.metrics  # metrics.json may be stale here
    assert tracking.open_parent_run(tiny_params, "report", search, evaluation) == search_run
    assert client.get_run(search_run).data.metrics["test_accuracy"] == 0.75


def test_under_dvc_the_default_store_is_at_the_repo_root_with_the_experiment_named(tmp_path):
    """DVC sets DVC_ROOT to the user's repo even for a queued or temporary experiment run in a copy."""
    environ = {"DVC_ROOT": str(tmp_path / "repo"), "DVC_EXP_NAME": "tidy-fern", "DVC_EXP_BASELINE_REV": "abc123"}
    assert tracking.project_root(environ) == tmp_path / "repo"
    assert tracking.project_root({}) == Path.cwd()
    tags = tracking.dvc_tags(environ)  # + the digest of dvc.lock when the working directory has one
    assert tags.items() >= {"automl.dvc_experiment": "tidy-fern", "mlflow.source.git.commit": "abc123"}.items()
    assert tracking.run_name(tracking.PipelineParams(), environ) == "tidy-fern-mnist5k-bayesian-300s"
