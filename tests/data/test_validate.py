"""The data check before any work: CSV and image problems together, duplicates, encodings."""

import csv

import pytest

from automl.data.labels import read_labels_csv
from automl.data.split import stratified_split
from automl.data.validate import check_dataset
from automl.errors import DataError
from tests.pipeline.test_bad_input import make_dataset


def test_csv_and_image_problems_come_in_one_report_by_line(tmp_path):
    csv_path, images = make_dataset(tmp_path)
    (images / "bad.png").write_bytes(b"not an image")
    csv_path.write_text(csv_path.read_text() + "cat1.png,\nbad.png,dog\nnope.png,owl\n")
    message = str(pytest.raises(DataError, check_dataset, csv_path, images).value)
    assert message.startswith(f"{csv_path}: 3 problem(s) in 3 row(s)")
    assert message.index("line 14: empty label") < message.index("line 15:") < message.index("line 16: nope.png")


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    csv_path, images = make_dataset(tmp_path)
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    names, labels = read_labels_csv(csv_path)
    assert names[0] == "cat0.png" and len(names) == 12
    assert len(check_dataset(csv_path, images, filename_column="filename", label_column="label").rows) == 12


def test_dropped_duplicates_are_named_and_never_reach_two_splits(tmp_path):
    csv_path, images = make_dataset(tmp_path, per_class=10)
    (images / "copy.png").write_bytes((images / "dog0.png").read_bytes())
    with csv_path.open("a", newline="") as handle:
        csv.writer(handle).writerows([("dog0.png", "dog"), ("copy.png", "dog"), ("./dog0.png", "dog")])
    with pytest.raises(DataError, match="3 problem"):
        check_dataset(csv_path, images)
    checked = check_dataset(csv_path, images, duplicates="drop")
    assert len(checked.rows) == 30 and [r.line for r in checked.rows] == list(range(2, 32))
    assert checked.notes == ["line 32: dog0.png dropped, the same file as line 12",
                             "line 33: copy.png dropped, the same image as line 12",
                             "line 34: ./dog0.png dropped, the same file as line 12"]
    parts = stratified_split([r.label for r in checked.rows], [0.2, 0.1], seed=0)
    assert sum(len(p) for p in parts) == 30


def test_each_class_must_reach_every_split(tmp_path):
    csv_path, images = make_dataset(tmp_path, per_class=2)
    with pytest.raises(DataError, match=r"class 'cat' has 2 image\(s\) \(line\(s\) 2, 3\); the split needs 3"):
        check_dataset(csv_path, images)
    assert len(check_dataset(csv_path, images, fractions=(0.3, 0.0)).rows) == 6
