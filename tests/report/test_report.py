"""The run report: every section present, every picture a real, non-blank image, from data alone."""

import base64
import io
import re

import numpy as np
from PIL import Image

from automl.arch.graph import initial_graph
from automl.arch.morph import apply_morph, possible_morphs
from automl.report import plots
from automl.report.render import PICTURES, SECTIONS, candidate_row, render, report_data, trajectory
from automl.search.records import CandidateRecord, Origin, Reasoning, Status


def records() -> list[CandidateRecord]:
    why = Reasoning(estimated_memory_mb=12.5, ucb=0.9, gp_mean=0.8, gp_std=0.04)

    def record(id: int, parent: int | None, operation: str | None, status: Status, **fields) -> CandidateRecord:
        return CandidateRecord(id, parent, operation, "conv64-pool", 12_345, fields.pop("reasoning", why), status,
                               epochs=2, timing={"wall": 3.0}, **fields)

    return [
        record(1, None, None, Status.COMPLETE, val_accuracy=0.6, finished_at=1003.0,
               reasoning=Reasoning(estimated_memory_mb=10.0), origin=Origin("0123456789abcdef" * 2, 4, 0)),
        record(2, 1, "skip_add", Status.COMPLETE, val_accuracy=0.8, finished_at=1007.0),
        record(3, 1, "wider_conv+deeper_dense", Status.FAILED, finished_at=1008.0,
               error="RuntimeError: out of memory\ntraceback"),
        record(4, 2, "deeper_conv", Status.COMPLETE, val_accuracy=0.7, finished_at=1012.0),
    ]


def test_the_report_has_every_section_with_non_blank_pictures_and_the_candidate_table(tmp_path):
    graph = initial_graph((1, 12, 12), 3)
    skip = next(s for s in possible_morphs(graph) if s["op"] == "skip_add")
    graph = apply_morph(graph, skip)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    probs = rng.dirichlet(np.ones(3), size=30)
    probs[np.arange(30), y] += 0.5 * (np.arange(30) % 3 != 0)  # two thirds right, one third mostly wrong
    images = rng.integers(0, 255, (30, 12, 12), dtype=np.uint8)
    data = report_data(records(), graph.to_dict(), ["cat", "dog", "eel"], y, probs / probs.sum(1, keepdims=True),
                       lambda i: images[i], {"run_id": "abc123", "summary": {"test accuracy": 0.66},
                                             "params": {"seed": 42}})
    assert data["misclassified"] and all(m["true"] != m["predicted"] for m in data["misclassified"])
    assert np.asarray(data["confusion"]).sum() == 30
    matrix = np.asarray(data["confusion"])
    assert data["per_class_accuracy"] == {c: matrix[i, i] / 10 for i, c in enumerate(["cat", "dog", "eel"])}

    paths = render(data, tmp_path / "report")
    html = paths["html"].read_text()
    for anchor, _, _, _ in SECTIONS:
        assert f'<section id="{anchor}">' in html
    assert '<section id="candidates">' in html and "RuntimeError: out of memory" in html and "skip_add" in html
    assert "#4 of 01234567" in html  # a warm start's root says which earlier run's candidate it is
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(SECTIONS)  # self-contained: no file is referenced
    for name in PICTURES:
        image = np.asarray(Image.open(paths[name]).convert("L"), dtype=float)
        assert min(image.shape) > 150 and image.std() > 5, name  # drawn, not blank
    for blob in embedded:
        assert Image.open(io.BytesIO(base64.b64decode(blob))).size[0] > 150


def test_the_trajectory_counts_from_the_search_start_and_keeps_the_best_so_far():
    rows = trajectory([candidate_row(r) for r in records()])
    assert [r["candidate"] for r in rows] == [1, 2, 3, 4]
    assert [r["seconds"] for r in rows] == [3.0, 7.0, 8.0, 12.0]  # the first started at 1000.0
    assert [r.get("best_so_far") for r in rows] == [0.6, 0.8, None, 0.8] and rows[2]["failure"]


def test_without_the_clock_files_the_trajectory_is_in_id_order_and_still_drawn():
    """A store DVC checked out has no ``clock.json``: the records read without times."""
    rows = trajectory([candidate_row(r.replace(finished_at=None, timing={})) for r in reversed(records())])
    assert [r["candidate"] for r in rows] == [1, 2, 3, 4] and [r["finished"] for r in rows] == [1, 2, 3, 4]
    assert all(r["seconds"] is None for r in rows)
    assert plots.trajectory(rows).axes[0].get_xlabel() == "candidates finished"


def test_mathtext_labels_and_an_image_gone_since_the_split_still_give_a_report(tmp_path):
    from automl.errors import DataError

    y = np.repeat(np.arange(2), 5)
    probs = np.tile([[0.3, 0.7]], (10, 1))  # class 0 always wrong

    def image(i: int) -> np.ndarray:
        if i == 0:
            raise DataError("images/gone.png: file not found.")
        return np.zeros((8, 8), np.uint8)

    data = report_data(records(), initial_graph((1, 8, 8), 2).to_dict(), ["$\\foo$", "50$ & $x"], y, probs, image,
                       {"run_id": "r", "summary": {}, "params": {}})
    assert sum(m["image"] is None for m in data["misclassified"]) == 1
    paths = render(data, tmp_path / "report")
    assert all(paths[name].stat().st_size > 1000 for name in PICTURES)
