"""Atomic writes that teammates can read and that give the same bytes for the same content."""

import os
import stat
import time

import numpy as np
import pytest
import torch

from automl.errors import CorruptFileError
from automl.fileio import atomic_dir, read_json, write_json, write_npz
from automl.search.store import load_weights, save_weights


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_folders_follow_the_umask(tmp_path, umask_022):
    write_json(tmp_path / "out" / "a.json", {"a": 1})
    atomic_dir(tmp_path / "folder", lambda d: (d / "inside.txt").write_text("x"))
    assert mode(tmp_path / "out" / "a.json") == 0o644
    assert mode(tmp_path / "folder") == 0o755 and mode(tmp_path / "folder" / "inside.txt") == 0o644


def test_the_same_weights_and_arrays_give_the_same_bytes(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_weights(state, tmp_path / "a.pt")
    save_weights(state, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(load_weights(tmp_path / "a.pt")["w"], state["w"])
    write_npz(tmp_path / "a.npz", x=np.ones((2, 2), np.float32), y=np.arange(2))
    time.sleep(2.1)  # np.savez stamps members with the time, to 2 s: a later write would differ
    write_npz(tmp_path / "b.npz", x=np.ones((2, 2), np.float32), y=np.arange(2))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz", allow_pickle=False) as data:
        assert data["x"].shape == (2, 2) and list(data["y"]) == [0, 1]


def test_a_file_cut_short_is_named_with_what_to_do(tmp_path):
    write_json(tmp_path / "searcher.json", {"a": list(range(100))})
    (tmp_path / "searcher.json").write_text((tmp_path / "searcher.json").read_text()[:50])
    save_weights({"w": torch.ones(100)}, tmp_path / "weights.pt")
    (tmp_path / "weights.pt").write_bytes((tmp_path / "weights.pt").read_bytes()[:300])
    for path, read in ((tmp_path / "searcher.json", read_json), (tmp_path / "weights.pt", load_weights)):
        with pytest.raises(CorruptFileError, match=f"{path}: cannot be read .* Start over without --resume"):
            read(path)
