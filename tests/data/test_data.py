import numpy as np
import pytest
from PIL import Image

from automl.data.embedded import write_default_dataset
from automl.data.images import load_image_dataset, own_pages, read_image
from automl.data.split import stratified_split
from automl.errors import DataError
from tests.conftest import write_dataset


def test_loads_uniform_images_as_one_array_with_string_labels(digits_on_disk, digits):
    x, y = load_image_dataset(*digits_on_disk)
    assert isinstance(x, np.ndarray) and x.shape == (400, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, digits[0])
    assert list(y[:2]) == ["0", "0"] and y.dtype.kind == "U"


def test_a_chunk_array_has_memory_of_its_own_that_outlives_its_views():
    chunk = own_pages((512, 3, 16, 16), np.uint8)
    chunk[:] = 7
    view = chunk[10:12]
    del chunk
    assert view.flags.writeable and view.shape == (2, 3, 16, 16) and int(view.sum()) == 7 * view.size
    assert own_pages((2, 3), np.float32).shape == (2, 3)  # smaller than a page: plain numpy memory


def test_mixed_sizes_and_modes_come_back_as_a_list(tmp_path):
    images = [np.zeros((10, 12), np.uint8), np.full((20, 8, 3), 200, np.uint8)]
    csv_path, folder = write_dataset(tmp_path, images, np.array(["cat", "dog"]))
    x, y = load_image_dataset(csv_path, folder)
    assert isinstance(x, list) and x[0].shape == (10, 12) and x[1].shape == (20, 8, 3)
    assert list(y) == ["cat", "dog"]


@pytest.mark.parametrize("mode,expect", [("RGBA", (6, 5, 3)), ("LA", (6, 5)), ("P", (6, 5, 3)),
                                         ("I;16", (6, 5)), ("CMYK", (6, 5, 3)), ("1", (6, 5))])
def test_image_modes_are_converted(tmp_path, mode, expect):
    rgb = Image.fromarray((np.arange(90).reshape(6, 5, 3) * 2).astype(np.uint8))
    wide = Image.fromarray((np.arange(30).reshape(6, 5) * 1000).astype(np.uint16))
    img = rgb.convert(mode) if mode != "I;16" else wide
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    arr = read_image(path)
    assert arr.shape == expect and arr.dtype == np.uint8


def test_every_bad_row_is_reported_at_once_naming_the_csv(tmp_path, digits):
    csv_path, folder = write_dataset(tmp_path, digits[0][:3], digits[1][:3])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "notes.txt").write_text("a text file, not an image")
    with csv_path.open("a") as handle:
        handle.write("missing.png,1\nbroken.png,2\n../../etc/passwd,3\nnotes.txt,4\nimg_0000.png,\n")
    with pytest.raises(DataError) as info:
        load_image_dataset(csv_path, folder)
    message = str(info.value)
    assert str(csv_path) in message and "problem(s)" in message
    assert "line 9: empty label" in message  # CSV problems come first, in one message
    handle_rows = csv_path.read_text().replace("img_0000.png,\n", "")
    csv_path.write_text(handle_rows)
    message = str(pytest.raises(DataError, load_image_dataset, csv_path, folder).value)
    assert "4 problem(s) in 4 row(s)" in message
    assert "missing.png: file not found" in message
    assert "broken.png" in message and "not a readable image" in message
    assert "outside the images folder" in message
    assert "notes.txt: not an image, or in a format Pillow cannot read" in message


def test_a_decompression_bomb_is_refused_without_decoding_it(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # 81 M pixels, a few kB on disk
    with pytest.raises(DataError, match="bomb.png: 9000x9000 pixels is over the limit"):
        read_image(bomb)


@pytest.mark.parametrize("content,message", [
    (None, "labels CSV not found"),
    ("filename\nimg.png\n", "label column"),
    ("filename,label\n", "no data rows"),
])
def test_csv_problems_say_what_to_do(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_image_dataset(path, tmp_path)


def test_stratified_split_is_seeded_disjoint_and_keeps_class_balance():
    labels = np.repeat(["a", "b", "c"], [50, 30, 20])
    test, val, train = stratified_split(labels, [0.2, 0.1], seed=3)
    assert len(set(test) | set(val) | set(train)) == 100 and len(test) + len(val) + len(train) == 100
    assert {c: int((labels[test] == c).sum()) for c in "abc"} == {"a": 10, "b": 6, "c": 4}
    again = stratified_split(labels, [0.2, 0.1], seed=3)
    assert all(np.array_equal(p, q) for p, q in zip((test, val, train), again))
    assert not np.array_equal(test, stratified_split(labels, [0.2, 0.1], seed=4)[0])


def test_stratified_split_says_which_classes_are_too_small():
    with pytest.raises(DataError, match="'rare' \\(1\\)"):
        stratified_split(np.array(["a"] * 10 + ["rare"]), [0.2, 0.1], seed=0)
    with pytest.raises(DataError, match="at least 2 classes"):
        stratified_split(np.array(["a"] * 10), [0.2], seed=0)


def test_embedded_dataset_is_real_mnist_written_as_png_and_csv(tmp_path):
    n = write_default_dataset("mnist5k", tmp_path / "labels.csv", tmp_path / "images")
    assert n == 5000
    x, y = load_image_dataset(tmp_path / "labels.csv", tmp_path / "images")
    assert x.shape == (5000, 28, 28)
    assert sorted(set(y)) == [str(d) for d in range(10)] and (y == "3").sum() == 500
    assert 0.1 < (x > 128).mean() < 0.25  # ink on a dark background, as MNIST is
    with pytest.raises(DataError, match="unknown embedded dataset"):
        write_default_dataset("imagenet", tmp_path / "a.csv", tmp_path / "a")
