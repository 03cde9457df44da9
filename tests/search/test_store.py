"""The candidate store and atomic files: a crash never leaves a file that loads as if complete, and
weights never run pickled code."""

import os
import pickle

import pytest
import torch

from automl.arch.graph import initial_graph
from automl.fileio import atomic_dir, atomic_path, write_json
from automl.search.records import Candidate, Status
from automl.search.store import CandidateStore, load_weights, save_weights


class Payload:
    """Unpickling this calls os.system: what a malicious "weights" file would do."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_weights_files_with_pickled_code_are_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2), "evil": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_weights(path)
    assert not (tmp_path / "pwned").exists()
    save_weights({"w": torch.ones(2)}, path)
    assert torch.equal(load_weights(path)["w"], torch.ones(2))


def test_a_crash_while_writing_keeps_the_previous_file_and_leaves_no_partial_one(tmp_path):
    target = tmp_path / "weights.pt"
    save_weights({"w": torch.zeros(3)}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("killed mid-write")
    assert torch.equal(load_weights(target)["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pt"]


def test_a_crash_while_filling_a_folder_keeps_the_previous_folder(tmp_path):
    folder = tmp_path / "images"
    atomic_dir(folder, lambda d: (d / "a.png").write_bytes(b"old"))

    def crash(d):
        (d / "b.png").write_bytes(b"new")
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        atomic_dir(folder, crash)
    assert [p.name for p in folder.iterdir()] == ["a.png"] and [p.name for p in tmp_path.iterdir()] == ["images"]
    write_json(tmp_path / "state.json", {"ok": True})
    assert (tmp_path / "state.json").read_text().endswith("}\n")


def test_a_record_keeps_its_clock_apart_and_reads_back_whole_or_without_it(tmp_path):
    """Two identical runs differ only in seconds and times: those go to ``clock.json`` (left out of DVC's
    hash by ``.dvcignore``), so ``record.json`` is the same bytes; a store without its clock still reads."""
    store = CandidateStore(tmp_path)
    candidate = Candidate(1, initial_graph((1, 8, 8), 3))
    history = ({"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.7, "val_loss": 0.9, "seconds": 1.25},)
    record = store.start(candidate).replace(status=Status.COMPLETE, val_accuracy=0.7, history=history,
                                            train_seconds=1.3, timing={"wall": 1.4}, tracking_run_id="abc")
    store.save(record)
    assert store.record(1) == record
    first = (store.dir(1) / "record.json").read_bytes()
    store.save(record.replace(train_seconds=9.0, finished_at=123.0, timing={"wall": 9.5}, tracking_run_id="other",
                              history=(dict(history[0], seconds=8.0),)))
    assert (store.dir(1) / "record.json").read_bytes() == first
    assert b"seconds" not in first and b"abc" not in first
    (store.dir(1) / "clock.json").unlink()
    bare = store.record(1)
    assert bare.val_accuracy == 0.7 and bare.finished_at is None and bare.train_seconds == 0.0
    assert bare.history == ({"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.7, "val_loss": 0.9},)

