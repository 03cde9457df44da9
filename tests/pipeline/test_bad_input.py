"""Bad input through the command line: every case a tiny dataset made here, every one refused before
any work with exit code 2, no traceback, the user's file (and line, where there is one) in the message
and nothing written outside the work folder. The README's troubleshooting section lists these cases."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automl.errors import DataError
from flows.cli import main

CLASSES = ("cat", "dog", "owl")


def make_dataset(root: Path, per_class: int = 4) -> tuple[Path, Path]:
    """A valid dataset: distinct 8x8 noise images, ``per_class`` of each class, and its labels CSV."""
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    lines = ["filename,label"]
    for c, label in enumerate(CLASSES):
        for i in range(per_class):
            name = f"{label}{i}.png"
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(images / name)
            lines.append(f"{name},{label}")
    csv_path = root / "labels.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path, images


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in a few bytes (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def append(csv_path: Path, text: str) -> None:
    csv_path.write_text(csv_path.read_text() + text)


# Each case: (id, change the dataset in place -> extra CLI args, substrings the message must hold).
# "{csv}" in a substring stands for the CSV's path.
def _latin1(c: Path, i: Path) -> list[str]:
    c.write_bytes(c.read_bytes() + "caf\xe9.png,cat\n".encode("latin-1"))
    return []


def _no_header(c: Path, i: Path) -> list[str]:
    c.write_text("\n".join(c.read_text().splitlines()[1:]) + "\n")
    return []


def _symlink_out(c: Path, i: Path) -> list[str]:
    (i / "link.png").symlink_to(c)  # the CSV itself: a file outside the images folder
    append(c, "link.png,cat\n")
    return []


def _same_bytes(c: Path, i: Path) -> list[str]:
    (i / "copy.png").write_bytes((i / "dog0.png").read_bytes())
    append(c, "copy.png,dog\n")
    return []


def _same_bytes_other_label(c: Path, i: Path) -> list[str]:
    (i / "copy.png").write_bytes((i / "dog0.png").read_bytes())
    append(c, "copy.png,owl\n")
    return []


def _image(name: str, data: bytes, label: str = "cat"):
    def change(c: Path, i: Path) -> list[str]:
        (i / name).write_bytes(data)
        append(c, f"{name},{label}\n")
        return []
    return change


def _rows(text: str):
    def change(c: Path, i: Path) -> list[str]:
        append(c, text)
        return []
    return change


def _csv(text: str | bytes):
    def change(c: Path, i: Path) -> list[str]:
        c.write_bytes(text if isinstance(text, bytes) else text.encode())
        return []
    return change


def _args(*args: str):
    return lambda c, i: list(args)


def _remove_class_images(c: Path, i: Path) -> list[str]:
    c.write_text("\n".join(line for line in c.read_text().splitlines() if not line.startswith(("owl1", "owl2",
                                                                                                "owl3"))) + "\n")
    return []


CASES = [
    ("csv missing", lambda c, i: (c.unlink(), [])[1], ["{csv}: labels CSV not found"]),
    ("csv is a png", lambda c, i: (c.write_bytes((i / "cat0.png").read_bytes()), [])[1], ["{csv}", "binary file"]),
    ("csv latin-1", _latin1, ["{csv}: line 14: not UTF-8", "0xe9"]),
    ("csv empty", _csv(""), ["{csv}: the CSV is empty"]),
    ("csv utf-16", _csv("filename,label\ncat0.png,cat\n".encode("utf-16")), ["{csv}: line 1: the CSV is UTF-16"]),
    ("csv header only", _csv("filename,label\n"), ["{csv}: no data rows"]),
    ("csv without header", _no_header, ["{csv}: line 1:", "no header row"]),
    ("csv one column", _csv("filename\ncat0.png\n"), ["{csv}: line 1: needs a label column"]),
    ("label column unknown", _args("--set", "data.label_column=kind"), ["{csv}: line 1: no label column named 'kind'"]),
    ("too few columns", _rows("cat1.png\n"), ["{csv}", "line 14: expected at least 2 columns"]),
    ("empty label", _rows("cat1.png,\n"), ["line 14: empty label"]),
    ("empty file name", _rows(",cat\n"), ["line 14: empty file name"]),
    ("huge field", _rows("x" * 200_000 + ".png,cat\n"), ["line 14: a field longer than 131,072 characters"]),
    ("long file name", _rows("x" * 5000 + ".png,cat\n"), ["line 14: a field of 5,004 characters"]),
    ("nul byte in name", _rows("cat\x000.png,cat\n"), ["line 14: a NUL byte"]),
    ("image missing", _rows("nope.png,cat\n"), ["line 14: nope.png: file not found"]),
    ("image truncated", _image("cut.png", b"\x89PNG\r\n\x1a\n\x00\x00"), ["line 14:", "cut.png: not an image"]),
    ("image is text", _image("notes.png", b"just some text"), ["line 14:", "notes.png: not an image"]),
    ("image empty file", _image("zero.png", b""), ["line 14:", "zero.png: not an image"]),
    ("decompression bomb", _image("bomb.png", png_header(30000, 30000)),
     ["line 14:", "bomb.png", "decompression bomb"]),
    ("bomb under pillow's limit", _image("big.png", png_header(9000, 9000)), ["line 14:", "9000x9000 pixels"]),
    ("path traversal", _rows("../labels.csv,cat\n"), ["line 14:", "outside the images folder"]),
    ("absolute path", _rows("/etc/hostname,cat\n"), ["line 14:", "outside the images folder"]),
    ("symlink outside", _symlink_out, ["line 14:", "outside the images folder"]),
    ("duplicate row", _rows("cat0.png,cat\n"), ["line 14: cat0.png is the same file as line 2", "data.duplicates"]),
    ("same file two labels", _rows("cat0.png,dog\n"), ["line 14:", "same file as line 2", "'dog'", "'cat'"]),
    ("same image two names", _same_bytes, ["line 14: copy.png is the same image as line 6"]),
    ("same image, other label", _same_bytes_other_label, ["line 14:", "same image as line 6", "keep one label"]),
    ("one class", _csv("filename,label\ncat0.png,cat\ncat1.png,cat\ncat2.png,cat\n"), ["{csv}", "at least 2 classes"]),
    ("class too small", _remove_class_images, ["{csv}", "class 'owl' has 1 image(s) (line(s) 10)", "needs 3"]),
    ("many problems summarised", _rows("".join(f"gone{k}.png,cat\n" for k in range(30))),
     ["30 problem(s) in 30 row(s)", "line 14: gone0.png", "... and 10 more: 10 file not found"]),
    ("images folder missing", _args("--images", "nowhere"), ["nowhere: images folder not found"]),
    ("csv without images", lambda c, i: ["--images", ""], ["--csv and --images go together"]),
    ("seed negative", _args("--set", "seed=-1"), ["seed must be >= 0"]),
    ("threads negative", _args("--set", "train.threads=-3"), ["train.threads must be >= 0"]),
    ("max width zero", _args("--set", "search.max_width=0"), ["search.max_width must be >= 1"]),
    ("crop padding negative", _args("--set", "train.crop_padding=-2"), ["train.crop_padding must be >= 0"]),
    ("weight decay negative", _args("--set", "train.weight_decay=-0.1"), ["train.weight_decay must be >= 0"]),
    ("no validation split", _args("--set", "split.val_fraction=0"), ["split.val_fraction must be in (0, 1)"]),
    ("fractional epochs", _args("--set", "train.max_epochs=2.7"), ["train.max_epochs: expected a int, got '2.7'"]),
    ("params file missing", _args("--params", "typo.yaml"), ["typo.yaml: params file not found"]),
    ("duplicates param unknown", _args("--set", "data.duplicates=maybe"), ["data.duplicates must be error or drop"]),
]


@pytest.mark.parametrize("change,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_up_front_in_the_users_terms(tmp_path, monkeypatch, capfd, change, expected):
    csv_path, images = make_dataset(tmp_path)
    extra = change(csv_path, images)
    monkeypatch.chdir(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    args = ["run", "--csv", str(csv_path), "--images", str(images), *extra]
    code = main(args)
    out, err = capfd.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in out + err
    for text in expected:
        assert text.replace("{csv}", str(csv_path)) in err, err
    written = {p for p in tmp_path.rglob("*")} - before
    assert all(p.relative_to(tmp_path).parts[0] == "artifacts" for p in written), written


def test_the_case_list_is_long_enough_and_in_the_readme():
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    assert len(CASES) >= 30
    missing = [name for name, _, _ in CASES if f"| {name} |" not in readme]
    assert not missing, f"README troubleshooting table lacks: {missing}"


def test_an_error_found_inside_the_flow_is_logged_in_one_line(tmp_path, tiny_params, prefect_harness, caplog):
    """An image that breaks after the check (deleted, say) fails the flow's split task: Prefect's log
    records of it carry no traceback (every handler, console or API, gets them so), and the message
    still names the user's CSV line."""
    from flows.pipeline import run_pipeline
    from flows.runlog import quiet_expected_errors

    csv_path, images = make_dataset(tmp_path)
    (images / "owl2.png").unlink()
    params = tiny_params.replace(**{"data.csv": str(csv_path), "data.images": str(images), "data.source": ""})
    with quiet_expected_errors(), pytest.raises(DataError, match="line 12: owl2.png: file not found"):
        run_pipeline(params, quiet=True)
    failures = [r for r in caplog.records if r.name.startswith("prefect.") and r.levelname == "ERROR"]
    assert failures and all(r.exc_info is None and "line 12: owl2.png" in r.getMessage() for r in failures)


def test_automl_check_says_what_it_found_and_which_duplicates_it_drops(tmp_path, monkeypatch, capfd):
    csv_path, images = make_dataset(tmp_path)
    append(csv_path, "cat0.png,cat\n")
    monkeypatch.chdir(tmp_path)
    args = ["check", "--csv", str(csv_path), "--images", str(images), "--set", "data.duplicates=drop"]
    assert main(args) == 0
    out, err = capfd.readouterr()
    assert "12 images in 3 classes (smallest 4, largest 4), every image readable" in out
    assert f"{csv_path}: line 14: cat0.png dropped, the same file as line 2" in err
    assert main(args[:-2]) == 2 and "line 14: cat0.png is the same file as line 2" in capfd.readouterr().err
