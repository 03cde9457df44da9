"""The Python API end to end, on real digits, and its exports checked in a process without automl."""

import json
import subprocess
import sys

import numpy as np
import pytest

from automl import ImageClassifier, NotFittedError
from automl.data.split import stratified_split
from automl.errors import ConfigError
from automl.search.records import SCHEMA, Status
from automl.search.store import CandidateStore

LOAD_EXPORTS = """
import json, sys, numpy as np, torch, onnxruntime
folder, images = sys.argv[1], np.load(sys.argv[2])
x = torch.from_numpy(images.astype(np.float32))[:, None]  # (N, 1, H, W) raw pixels
labels = json.load(open(folder + "/labels.json"))["labels"]
ts = torch.jit.load(folder + "/model.torchscript.pt")(x).numpy()
session = onnxruntime.InferenceSession(folder + "/model.onnx")
ox = session.run(None, {"images": x.numpy()})[0]
print(json.dumps({"torchscript": [labels[i] for i in ts.argmax(1)], "onnx": [labels[i] for i in ox.argmax(1)],
                  "proba": ts.tolist(), "max_diff": float(np.abs(ts - ox).max()),
                  "automl_imported": "automl" in sys.modules}))
"""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, digits):
    x, y = digits
    test_idx, train_idx = stratified_split(y, [0.25], seed=0)
    clf = ImageClassifier(path=tmp_path_factory.mktemp("automodels"), verbose=True, seed=3)
    clf.params = clf.params.replace(**{"preprocess.image_size": 16, "train.max_epochs": 3, "train.threads": 2,
                                       "final_fit.ensemble": 2})  # the exports and load below hold two networks
    clf.fit(x[train_idx], y[train_idx], time_limit=20)
    summary = clf.final_fit(x[train_idx], y[train_idx], x[test_idx], y[test_idx], retrain=False, epochs=2)
    return clf, x[test_idx], y[test_idx], summary


def test_fit_keeps_candidates_and_a_readable_log(fitted):
    clf = fitted[0]
    record = json.loads((clf.path / "candidates" / "0001" / "record.json").read_text())
    assert record["status"] == Status.COMPLETE.value and record["schema"] == SCHEMA
    assert 0 < record["val_accuracy"] <= 1
    assert (clf.path / "candidates" / "0001" / "weights.pt").stat().st_size > 10_000
    assert json.loads((clf.path / "candidates" / "0001" / "graph.json").read_text())["n_classes"] == 10
    log = (clf.path / "search.log").read_text()
    assert "candidate #1 complete" in log and "initial network" in log


def test_final_fit_then_evaluate_predict_in_the_users_labels(fitted):
    clf, x_test, y_test, summary = fitted
    acc = clf.evaluate(x_test, y_test)
    assert summary["test_accuracy"] == pytest.approx(acc)
    assert acc > 0.3  # 10 classes, 300 training images, a few epochs: well above chance
    labels = clf.predict(x_test)
    assert labels.dtype.kind == "U" and set(labels) <= set(y_test)
    assert np.mean(labels == y_test) == pytest.approx(acc)
    proba = clf.predict_proba(x_test[:5])
    assert proba.shape == (5, 10) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_predict_accepts_a_list_of_mixed_sizes_and_rgb(fitted):
    clf, x_test = fitted[0], fitted[1]
    rgb = np.repeat(x_test[0][:, :, None], 3, axis=2)
    big = np.kron(x_test[1], np.ones((2, 2), np.uint8))  # 56x56
    assert len(clf.predict([rgb, big, x_test[2]])) == 3


def test_exports_load_without_automl_and_agree_with_predict(fitted, tmp_path):
    clf, x_test = fitted[0], fitted[1]
    clf.export(tmp_path / "exported")
    np.save(tmp_path / "x.npy", x_test)
    out = subprocess.run([sys.executable, "-c", LOAD_EXPORTS, str(tmp_path / "exported"), str(tmp_path / "x.npy")],
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["max_diff"] < 1e-4 and not got["automl_imported"]  # TorchScript and ONNX: the same numbers
    # Against predict: the library rounds resized pixels to uint8 before the network (its stored tensors),
    # the export feeds them unrounded, so probabilities differ by a few thousandths; labels must agree
    # wherever the two best classes are further apart than that.
    proba = clf.predict_proba(x_test)
    assert np.abs(np.array(got["proba"]) - proba).max() < 0.01
    top2 = np.sort(proba, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 0.02
    assert decided.mean() > 0.9
    expected = clf.predict(x_test)[decided].tolist()
    assert np.array(got["torchscript"])[decided].tolist() == expected
    assert np.array(got["onnx"])[decided].tolist() == expected


def test_exports_from_two_fresh_processes_are_byte_identical(fitted, tmp_path):
    """What a deterministic re-run (``dvc repro``) needs; within one process TorchScript numbers each
    new trace's classes, so the comparison is between processes, as re-runs are."""
    export = "import sys; from automl import ImageClassifier; ImageClassifier.load(sys.argv[1]).export(sys.argv[2])"
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", export, str(fitted[0].path), str(tmp_path / name)], check=True)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 3 and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
                                   for f in files)


def test_load_brings_back_the_final_model(fitted):
    clf, x_test = fitted[0], fitted[1]
    again = ImageClassifier.load(clf.path)
    assert len(again.model.network.members) == 2 and fitted[3]["ensemble"] == 2 and fitted[3]["test_views"] == 9
    np.testing.assert_allclose(again.predict_proba(x_test), clf.predict_proba(x_test), atol=1e-6)


def test_fit_keeps_to_its_time_limit(fitted):
    """The deadline cuts the epoch in progress: the search overruns its limit by less than its longest
    epoch (measured in the same run, so a slow machine does not fail it)."""
    store = CandidateStore(fitted[0].path)
    longest_epoch = max(h["seconds"] for r in store.records() for h in r.history)
    assert "search ended (time limit)" in (fitted[0].path / "search.log").read_text()
    assert store.spent() <= 20 + longest_epoch + 1.0


def test_misuse_says_what_to_do(tmp_path, digits):
    with pytest.raises(NotFittedError, match="fit"):
        ImageClassifier(path=tmp_path).predict(digits[0][:2])
    with pytest.raises(ConfigError, match="time_limit must be positive"):
        ImageClassifier(path=tmp_path).fit(*digits, time_limit=0)


def test_children_of_preserving_morphs_start_where_their_parent_ended(fitted):
    """On this real search, inherited weights reproduce the parent's validation accuracy."""
    clf = fitted[0]
    records = {r["id"]: r for r in (json.loads(p.read_text()) for p in clf.path.glob("candidates/*/record.json"))}
    preserving = [r for r in records.values() if r["parent_id"] and "shrink" not in r["operation"]]
    assert len(records) >= 3 and preserving
    for r in preserving:
        assert abs(r["inherited_val_accuracy"] - records[r["parent_id"]]["val_accuracy"]) <= 0.005, r


def test_same_seed_same_candidates_metrics_and_final_accuracy(tmp_path, digits):
    """On CPU with one torch thread, a run bounded by ``max_candidates`` (a time limit that cuts
    training makes the number of epochs depend on the machine's speed) is reproducible bit for bit:
    candidates, validation metrics, final predictions. Only the reported mean training loss may differ
    in its last float32 bits. With more threads, torch's threaded reductions may also move weights by
    a few ulps (the README says so)."""
    x, y = digits
    test_idx, train_idx = stratified_split(y, [0.25], seed=0)
    params = ImageClassifier().params.replace(**{
        "preprocess.image_size": 12, "train.max_epochs": 2, "train.threads": 1, "search.max_candidates": 4})

    def run(folder: str) -> tuple[list[tuple], float]:
        clf = ImageClassifier(path=tmp_path / folder, seed=11, params=params)
        clf.fit(x[train_idx], y[train_idx], time_limit=600)
        records = [json.loads(p.read_text()) for p in sorted((tmp_path / folder).glob("candidates/*/record.json"))]
        seen = [(r["id"], r["parent_id"], r["operation"], r["architecture"], r["val_accuracy"], r["val_loss"],
                 r["inherited_val_accuracy"], r["epochs"]) for r in records]
        losses = [h["train_loss"] for r in records for h in r["history"]]
        clf.final_fit(x[train_idx], y[train_idx], epochs=1)
        return seen, losses, clf.evaluate(x[test_idx], y[test_idx]), clf.predict_proba(x[test_idx])

    (seen, losses, acc, proba), (seen2, losses2, acc2, proba2) = run("a"), run("b")
    assert len(seen) == 4 and seen == seen2 and acc == acc2 and np.array_equal(proba, proba2)
    assert losses == pytest.approx(losses2, rel=1e-6)


def test_when_every_candidate_fails_fit_says_why(tmp_path, digits):
    from automl.errors import SearchError

    clf = ImageClassifier(path=tmp_path, params=ImageClassifier().params.replace(**{
        "preprocess.image_size": 8, "train.learning_rate": 1e9, "train.augment": False}))
    with pytest.raises(SearchError, match="no candidate trained successfully.*FloatingPointError: training loss"):
        clf.fit(*digits, time_limit=60)
    assert "candidate #1 failed" in (tmp_path / "search.log").read_text()


def test_image_size_0_sizes_the_input_from_the_images_and_the_training_they_get(tmp_path, digits):
    """400 digits blown up to 56 px; 360 train on 50 epochs each, so 18,000 images a candidate: 33 px
    (``automl.training.protocol.auto_image_size``), used for training, exports and the log alike."""
    x, y = digits
    big = np.kron(x, np.ones((2, 2), np.uint8))
    clf = ImageClassifier(path=tmp_path, params=ImageClassifier().params.replace(**{
        "preprocess.image_size": 0, "train.max_epochs": 50, "train.threads": 1, "search.max_candidates": 1}))
    clf.fit(big, y, time_limit=3)
    assert clf.preprocessor.image_size == 33 and clf.model(clf.preprocessor.transform(big[:2])).shape == (2, 10)
    assert "training images at 33 px" in (tmp_path / "search.log").read_text()


def test_missing_labels_are_an_error_naming_where_they_are(tmp_path, digits):
    from automl.errors import DataError

    labels = digits[1].astype(object)
    labels[[3, 17]] = [None, float("nan")]
    with pytest.raises(DataError, match="2 label\\(s\\) missing \\(None or NaN\\) at index 3, 17"):
        ImageClassifier(path=tmp_path).fit(digits[0], labels, time_limit=5)


def test_the_exported_model_predicts_files_of_mixed_shapes_in_batches_and_in_order(fitted, tmp_path):
    from PIL import Image

    from automl.export.predict import ExportedModel

    clf, x_test = fitted[0], fitted[1]
    clf.export(tmp_path / "exported")
    images = [x_test[0], np.kron(x_test[1], np.ones((2, 2), np.uint8)), x_test[2], x_test[3]]
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    found = list(ExportedModel(tmp_path / "exported").predict_files(paths, batch_size=3))
    assert [f.path for f in found] == paths
    assert [f.label for f in found] == clf.predict(images).tolist()


def test_scikit_learn_clones_it_and_reads_classes_and_score(fitted):
    from sklearn.base import clone

    clf, x_test = fitted[0], fitted[1]
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy.model is None
    assert list(clf.classes_) == list(clf.preprocessor.classes)
    assert clf.predict_proba(x_test[:3]).shape == (3, len(clf.classes_))
    y_test = fitted[2]
    assert clf.score(x_test, y_test) == clf.evaluate(x_test, y_test)
    assert copy.set_params(seed=5).params.seed == 5 and copy.get_params()["seed"] == 5
    with pytest.raises(ConfigError, match="unknown parameter"):
        copy.set_params(sead=5)


def test_a_second_fit_needs_overwrite_and_validation_data_ranks_the_candidates(tmp_path, digits):
    x, y = digits
    val, train = stratified_split(y, [0.25], seed=0)
    params = ImageClassifier().params.replace(**{"preprocess.image_size": 8, "train.max_epochs": 1,
                                                 "search.max_candidates": 1})
    ImageClassifier(path=tmp_path, params=params).fit(x, y, time_limit=30)
    with pytest.raises(ConfigError, match="holds an earlier search; pass overwrite=True"):
        ImageClassifier(path=tmp_path, params=params).fit(x, y, time_limit=30)
    clf = ImageClassifier(path=tmp_path, params=params, overwrite=True)
    clf.fit(x[train], y[train], time_limit=30, validation_data=(x[val], y[val]))
    assert "(300 training images at 8 px)" in (tmp_path / "search.log").read_text()  # none held out of x


def test_the_mlflow_model_reads_images_from_a_dataframe_and_refuses_a_table_of_numbers(fitted, tmp_path):
    import pandas as pd

    from tasks.pyfunc_model import TorchScriptImageModel

    clf, x_test = fitted[0], fitted[1]
    paths = clf.export(tmp_path / "exported")
    model = TorchScriptImageModel()
    model.load_context(type("Context", (), {"artifacts": {"torchscript": str(paths["torchscript"]),
                                                          "labels": str(paths["labels"])}})())
    expected = [str(v) for v in clf.predict(x_test[:3])]
    assert [str(v) for v in model.predict(None, pd.DataFrame({"image": list(x_test[:3])}))] == expected
    assert [str(v) for v in model.predict(None, list(x_test[:3]))] == expected
    with pytest.raises(ValueError, match="expected images"):
        model.predict(None, pd.DataFrame(x_test[0]))


def test_a_lazy_dataset_trains_from_caches_on_disk_to_the_same_model_as_arrays(tmp_path, digits_on_disk):
    """``load_image_dataset(..., lazy=True)`` never holds the images: fit and final fit read uint8 caches
    in ``path/data/`` by memory map, predict decodes a chunk at a time; the numbers are those of arrays."""
    from automl import load_image_dataset
    from automl.data.images import ImageFiles

    params = ImageClassifier().params.replace(**{
        "preprocess.image_size": 12, "train.max_epochs": 1, "train.threads": 1, "search.max_candidates": 2})

    def run(lazy: bool) -> tuple[np.ndarray, float]:
        x, y = load_image_dataset(*digits_on_disk, lazy=lazy)
        assert isinstance(x, ImageFiles) == lazy
        clf = ImageClassifier(path=tmp_path / str(lazy), seed=3, params=params)
        clf.fit(x, y, time_limit=600)
        clf.final_fit(x, y, epochs=1)
        return clf.predict_proba(x), clf.evaluate(x, y)

    (eager, eager_acc), (lazy, lazy_acc) = run(False), run(True)
    assert sorted(p.name for p in (tmp_path / "True" / "data").iterdir()) == ["final.npy", "train.npy", "val.npy"]
    assert not (tmp_path / "False" / "data").exists()
    assert np.array_equal(eager, lazy) and eager_acc == lazy_acc
