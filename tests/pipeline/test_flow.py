"""The Prefect flow end to end under Prefect's test harness, and what it leaves in MLflow."""

import csv
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from automl.search.store import CandidateStore
from flows.cli import main
from flows.pipeline import run_pipeline
from tasks.remote import DATA_FILES, DATA_ROOT, DIGEST_TAG

PYFUNC_PREDICT = """
import json, sys, numpy as np, mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
x = np.load(sys.argv[2])
probs = model.predict(x, params={"probabilities": True})
print(json.dumps([[str(v) for v in model.predict(x)], probs.columns.tolist(), probs.to_numpy().tolist()]))
"""


@pytest.fixture(scope="module")
def flow_run(prefect_harness, digits_on_disk, tmp_path_factory):
    from tasks.settings import PipelineParams

    tmp = tmp_path_factory.mktemp("flow")
    csv_path, images = digits_on_disk
    params = PipelineParams().replace(**{
        "data.source": "", "data.csv": str(csv_path), "data.images": str(images),
        "preprocess.image_size": 12, "train.max_epochs": 2, "train.threads": 2, "search.time_limit": 25,
        "search.parallel": 2, "runner.kind": "dask", "final_fit.epochs": 1, "paths.work": str(tmp / "artifacts"),
        "paths.export": str(tmp / "exported"), "paths.reports": str(tmp / "reports"),
        "tracking.uri": f"sqlite:///{tmp / 'mlflow.db'}"})
    result = run_pipeline(params, quiet=True)
    return params, result, MlflowClient(params.tracking.uri)


@pytest.mark.slow
def test_flow_runs_every_stage_and_reports_test_accuracy(flow_run):
    params, result, _ = flow_run
    assert result["split"] == {"test": 80, "val": 40, "train": 280}
    metrics = json.loads(open(params.paths.work + "/metrics.json").read())
    assert metrics["test_accuracy"] == pytest.approx(result["metrics"]["test_accuracy"])
    assert 0.15 < metrics["test_accuracy"] <= 1 and metrics["test_size"] == 80
    assert result["search"]["n_candidates"] >= 3 and result["search"]["n_failed"] == 0
    assert result["timing"]["data_seconds"] > 0 and result["search"]["timing"]["train_batch"] > 0


def test_the_tracking_uri_stays_out_of_prefect(flow_run):
    """The URI may carry a password: Prefect's database holds no flow run parameter with it."""
    from prefect import get_client

    params, result, _ = flow_run
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.parameters.get("params", {}).get("paths", {}).get("work")
                == params.paths.work]
    assert runs and all(params.tracking.uri not in json.dumps(r.parameters) for r in runs)
    assert runs[0].parameters["params"]["tracking"]["uri"] == ""
    # what the Prefect UI shows: the run's name, the candidates' task runs by id, the outcome as artifacts
    assert runs[0].name.endswith("-bayesian-25s")
    with get_client(sync_client=True) as client:
        tasks = {t.name for t in client.read_task_runs() if t.flow_run_id == runs[0].id}
        keys = {a.key for a in client.read_artifacts() if a.flow_run_id == runs[0].id}
    assert "candidate-1" in tasks and {"automl-result", "automl-candidates"} <= keys
    assert os.environ.get("MLFLOW_TRACKING_URI") != params.tracking.uri  # set for the run only


@pytest.mark.slow
def test_mlflow_has_the_parent_run_and_a_nested_run_per_candidate(flow_run):
    params, result, client = flow_run
    parent = client.get_run(result["export"]["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.time_limit"] == "25.0" and parent.data.params["seed"] == "42"
    assert parent.data.metrics["test_accuracy"] == pytest.approx(result["metrics"]["test_accuracy"])
    # comparable in the UI: a telling name, what produced it, the same names as metrics.json
    assert parent.info.run_name == "digits0-bayesian-25s" or parent.info.run_name.endswith("-bayesian-25s")
    assert len(parent.data.tags["mlflow.source.git.commit"]) == 40 and "automl.data_csv_sha256" in parent.data.tags
    assert parent.data.metrics["search_best_val_accuracy"] == result["metrics"]["search_best_val_accuracy"]
    assert parent.data.metrics["best_candidate_id"] == result["search"]["best_id"]
    per_class = result["metrics"]["per_class_accuracy"]
    assert all(parent.data.metrics[f"test_accuracy.{c}"] == pytest.approx(a) for c, a in per_class.items())
    assert client.get_metric_history(parent.info.run_id, "test_accuracy")[0].timestamp > 1_700_000_000_000
    experiment = parent.info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  order_by=["attributes.start_time ASC"])
    assert len(children) == result["search"]["n_candidates"]
    seed, *morphed = sorted(children, key=lambda r: int(r.data.tags["automl.candidate_id"]))
    assert seed.data.tags["automl.parent_candidate"] == "none" and seed.data.tags["automl.operation"] == "none"
    for child in [seed] + morphed:
        assert child.data.metrics["n_params"] > 1_000 and int(child.data.params["train.batch_size"]) > 0
        losses = client.get_metric_history(child.info.run_id, "train_loss")
        accs = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in losses] == list(range(1, len(losses) + 1)) and len(accs) == len(losses) >= 1
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"graph.json", "weights.pt"} <= artifacts
        assert "searcher.estimated_memory_mb" in child.data.metrics
        assert child.data.metrics["score"] == child.data.metrics["best_val_accuracy"]  # train.score_epochs 0
    for child in morphed:  # the searcher's reasoning, and where the weights came from
        tags, metrics = child.data.tags, child.data.metrics
        assert tags["automl.parent_candidate"] != "none" and tags["automl.operation"] != "none"
        assert {"searcher.ucb", "searcher.gp_mean", "searcher.gp_std", "inherited_val_accuracy"} <= set(metrics)
    graph = json.loads(open(client.download_artifacts(morphed[0].info.run_id, "graph.json")).read())
    assert graph["history"] and graph["history"][-1]["op"] in morphed[0].data.tags["automl.operation"]


@pytest.mark.slow
def test_a_dask_local_cluster_trains_candidates_in_two_worker_processes_through_mlflow(flow_run):
    """The flow above runs with runner.kind=dask (a LocalCluster of 2 workers): candidates train in
    two other processes, and their weights reach the driver's store through the MLflow artifact store."""
    params, result, client = flow_run
    parent = client.get_run(result["export"]["run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    workers = {run.data.tags["automl.worker"] for run in children}
    assert len(workers) == 2 and not any(w.endswith(f":{os.getpid()}") for w in workers)
    assert set(DATA_FILES) == {Path(a.path).name for a in client.list_artifacts(
        parent.info.run_id, "data/preprocessed")}
    assert (DATA_ROOT / parent.data.tags[DIGEST_TAG] / "preprocessed" / "train.npy").is_file()  # fetched by digest
    store = CandidateStore(Path(params.paths.work, "search"))
    for run in children:
        candidate_id = int(run.data.tags["automl.candidate_id"])
        sent = Path(client.download_artifacts(run.info.run_id, "weights.pt"))
        assert store.weights_path(candidate_id).read_bytes() == sent.read_bytes()
        assert store.record(candidate_id).tracking_run_id == run.info.run_id


@pytest.mark.slow
def test_the_run_writes_its_report_logs_it_to_mlflow_and_automl_report_draws_it_again(flow_run, capsys):
    params, result, client = flow_run
    run_id = result["export"]["run_id"]
    html = Path(result["report"]["html"])
    assert html == Path(params.paths.reports, run_id, "report.html")
    text = html.read_text()
    for section in ("trajectory", "lineage", "architecture", "confusion", "per-class", "misclassified", "candidates"):
        assert f'<section id="{section}">' in text
    assert text.count("<tr><td>") == result["search"]["n_candidates"]  # one table row per candidate
    assert "over 9 shifted copies of each image" in text  # final_fit.test_shifts 1: the model the user gets
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "report")}
    assert {"report.html", "report_data.json", "trajectory.png", "misclassified.png"} <= logged
    trajectory = Path(params.paths.work, "report", "trajectory.csv").read_text().splitlines()
    assert trajectory[0] == "finished,candidate,val_accuracy,best_so_far" and len(trajectory) >= 2
    assert len(Path(params.paths.work, "report", "predictions.csv").read_text().splitlines()) == 1 + 80

    html.unlink()
    assert main(["report", run_id, "--set", f"tracking.uri={params.tracking.uri}",
                 "--set", f"paths.reports={params.paths.reports}"]) == 0
    assert html.read_text().count('<section id="') == text.count('<section id="')
    assert main(["report", "no-such-run", "--set", f"tracking.uri={params.tracking.uri}"]) == 2
    assert "run no-such-run: not found" in capsys.readouterr().err


@pytest.mark.slow
def test_automl_predict_labels_images_with_the_exported_and_the_registered_model(flow_run, capsys, tmp_path):
    params, result, _ = flow_run
    with Path(params.paths.work, "split", "test.csv").open() as handle:
        truth = {row["filename"]: row["label"] for row in csv.DictReader(handle)}
    images = Path(params.data.images)
    outputs = []
    for model in (params.paths.export, "models:/automl-image-classifier@champion"):
        assert main(["predict", model, *[str(images / name) for name in truth], "--json",
                     "--set", f"tracking.uri={params.tracking.uri}"]) == 0
        outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    assert outputs[0] == outputs[1] and len(outputs[0]) == 80
    assert all(0 < row["probability"] <= 1 and row["label"] in set(truth.values()) for row in outputs[0])
    accuracy = np.mean([row["label"] == truth[Path(row["path"]).name] for row in outputs[0]])
    assert accuracy == pytest.approx(result["metrics"]["test_accuracy"], abs=0.05)
    assert main(["predict", params.paths.work, str(images)]) == 2  # not a model folder: a clear error
    assert "no model.torchscript.pt" in capsys.readouterr().err
    for name in ("predictions.csv", "predictions.jsonl"):
        assert main(["predict", params.paths.export, *[str(images / n) for n in truth], "--output",
                     str(tmp_path / name)]) == 0
        assert capsys.readouterr().out == f"80 predictions written to {tmp_path / name}\n"
    with open(tmp_path / "predictions.csv", newline="") as handle:
        rows = [{**r, "probability": float(r["probability"])} for r in csv.DictReader(handle)]
    assert rows == [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert rows == outputs[0]


@pytest.mark.slow
def test_mlflow_model_predicts_raw_images_in_a_new_process(flow_run, digits, tmp_path):
    params, result, _ = flow_run
    images = digits[0][::40]  # one of each digit
    np.save(tmp_path / "x.npy", images)
    env = {"MLFLOW_TRACKING_URI": params.tracking.uri, "PATH": "/usr/bin:/bin"}
    champion = f"models:/{params.tracking.registered_model}@champion"  # what a teammate loads
    out = subprocess.run([sys.executable, "-c", PYFUNC_PREDICT, champion, str(tmp_path / "x.npy")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    labels, columns, probabilities = json.loads(out.stdout.strip().splitlines()[-1])
    import torch
    module = torch.jit.load(result["export"]["torchscript"])
    probs = module(torch.from_numpy(images.astype(np.float32))[:, None])
    expected = json.loads(open(result["export"]["labels"]).read())["labels"]
    assert labels == [expected[i] for i in probs.argmax(1).tolist()] and columns == expected
    assert np.allclose(probabilities, probs.detach().numpy(), atol=1e-5)


@pytest.mark.slow
def test_mlflow_models_serve_answers_real_images_and_rejects_a_malformed_request(flow_run, digits):
    """The registered model behind ``mlflow models serve`` on a loopback port: real images in JSON get
    labels (and probabilities on request); a request that is not a batch of images gets a 4xx saying why."""
    from tests.pipeline.test_tracking_server import free_port, wait_until_up

    params, result, _ = flow_run
    port = free_port()
    bin_dir = Path(sys.executable).parent  # mlflow runs uvicorn from PATH: the venv's, as when it is activated
    env = {**os.environ, "MLFLOW_TRACKING_URI": params.tracking.uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m",
                             f"models:/{params.tracking.registered_model}@champion", "--env-manager", "local",
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", proc)
        images = digits[0][::40]
        labels = post(port, {"inputs": images.tolist()})["predictions"]
        import torch
        probs = torch.jit.load(result["export"]["torchscript"])(torch.from_numpy(images.astype(np.float32))[:, None])
        names = json.loads(open(result["export"]["labels"]).read())["labels"]
        assert labels == [names[i] for i in probs.argmax(1).tolist()]
        rows = post(port, {"inputs": images.tolist(), "params": {"probabilities": True}})["predictions"]
        assert [max(row, key=row.get) for row in rows] == labels
        assert all(abs(sum(row.values()) - 1) < 1e-4 for row in rows)
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(port, {"inputs": [1, 2, 3]})  # numbers, not images
        assert 400 <= refused.value.code < 500 and "shape" in refused.value.read().decode().lower()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def post(port: int, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_the_champion_alias_moves_only_to_a_better_model_on_the_same_test_split(flow_run):
    from tasks import registry

    params, result, client = flow_run
    exported, name = result["export"], params.tracking.registered_model
    assert exported["registered"]["alias"] == "champion" and exported["registered"]["version"] == 1
    version = client.get_model_version(name, "1")
    assert float(version.tags[registry.ACCURACY_TAG]) == pytest.approx(result["metrics"]["test_accuracy"])
    split = version.tags[registry.SPLIT_TAG]
    register = lambda acc, split: registry.register(params, exported["model_uri"], exported["run_id"], acc, split)  # noqa: E731
    acc = result["metrics"]["test_accuracy"]
    assert register(acc, split)["alias"] == "challenger"  # a tie does not take the place
    assert register(1.0, "another split")["alias"] == "challenger"
    assert int(client.get_model_version_by_alias(name, "champion").version) == 1
    better = register(acc + 0.01, split)
    assert better["alias"] == "champion" and better["uri"] == f"models:/{name}@champion"
    assert int(client.get_model_version_by_alias(name, "champion").version) == better["version"] == 4
    assert int(client.get_model_version_by_alias(name, "challenger").version) == 3


@pytest.mark.slow
def test_a_second_run_warm_started_from_the_first_begins_with_its_best_networks_scored_not_trained(flow_run,
                                                                                                  tmp_path):
    """Scheduled runs that build on each other: a second ``automl run`` with ``search.warm_start`` naming the
    first's MLflow run starts with the first's two best architectures, scored without training, their
    origin in the store and in MLflow; morphs grow from them (its candidates train in Prefect tasks, the
    roots in the driver, which holds their weights)."""
    params, result, client = flow_run
    earlier = result["export"]["run_id"]
    best_two = [(r.id, r.architecture) for r in CandidateStore(Path(params.paths.work, "search")).ranked()[:2]]
    later = params.replace(**{
        "runner.kind": "thread", "search.parallel": 1, "search.max_candidates": 4, "search.warm_start": earlier,
        "search.warm_start_top": 2, "paths.work": str(tmp_path / "artifacts"),
        "paths.export": str(tmp_path / "exported"), "paths.reports": str(tmp_path / "reports")})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(later.to_dict()))
    assert main(["run", "--quiet", "--params", str(tmp_path / "params.yaml")]) == 0
    records = CandidateStore(tmp_path / "artifacts" / "search").records()
    assert [(r.origin.candidate, r.architecture) for r in records[:2]] == best_two
    assert all(r.origin.source == earlier and r.epochs == 0 and r.stopped == "warm start" for r in records[:2])
    assert len(records) == 4 and all(r.origin is None and r.parent_id for r in records[2:])
    experiment = client.get_run(earlier).info.experiment_id
    tagged = client.search_runs([experiment], f"tags.`automl.origin_run` = '{earlier}'")
    assert sorted(int(r.data.tags["automl.origin_candidate"]) for r in tagged) == sorted(i for i, _ in best_two)
    parents = {r.data.tags["mlflow.parentRunId"] for r in tagged}
    assert len(parents) == 1 and parents != {earlier}  # the roots are candidates of the second run


class CrashedTask:
    """A Prefect future whose task crashed outside the candidate's own error handling."""

    def result(self):
        raise RuntimeError("worker lost")


class DiskFull:
    def result(self):
        raise OSError(28, "No space left on device")


def test_a_crashed_candidate_task_is_a_failed_record_but_a_full_disk_stops_the_run(tmp_path):
    from automl.arch.graph import initial_graph
    from automl.search.records import Candidate, Status
    from automl.search.store import CandidateStore
    from flows.pipeline import _result
    from tasks.settings import PipelineParams

    store, candidate = CandidateStore(tmp_path), Candidate(3, initial_graph((1, 8, 8), 2))
    record = _result(CrashedTask(), candidate, store, True, PipelineParams())
    assert record.status is Status.FAILED and record.error.startswith("RuntimeError: worker lost")
    assert store.record(3) == record
    with pytest.raises(OSError, match="No space left"):
        _result(DiskFull(), candidate, store, True, PipelineParams())


def test_the_report_says_which_members_of_the_final_model_were_final_fitted(tmp_path):
    from automl.arch.builder import build_module
    from automl.arch.graph import initial_graph
    from automl.session.network import FITTED_MEMBER, SNAPSHOT_MEMBER, save_network
    from tasks.report import final_model_text

    graph = initial_graph((1, 8, 8), 2, width=4)
    state = build_module(graph).state_dict()
    save_network(graph, state, tmp_path, members=[(graph, state)] * 3, member_notes=[FITTED_MEMBER])
    assert final_model_text(tmp_path) == ("the best candidate, final-fitted, averaged with the next 3 "
                                          "(1 final-fitted too, 2 with searched weights)")
    save_network(graph, state, tmp_path, members=[(graph, state)] * 3, member_notes=[SNAPSHOT_MEMBER] * 2)
    assert final_model_text(tmp_path) == ("the best candidate, final-fitted, averaged with its weights at the end of "
                                          "2 earlier cycles of that fit and with the next 1 (1 with searched weights)")
    save_network(graph, state, tmp_path)
    assert final_model_text(tmp_path) == "the best candidate, final-fitted"
