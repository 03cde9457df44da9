"""The uint8 pixel cache: an antialiased resize matching PIL's, batches normalized as they are read, and
a memory-mapped cache that trains to exactly what the same pixels in memory train to."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from automl.arch.builder import build_module
from automl.arch.graph import initial_graph
from automl.config import TrainConfig
from automl.data.pixels import CacheFile, Pixels, open_cache, statistics, write_cache
from automl.data.preprocess import Preprocessor, resize, to_pixels
from automl.training.trainer import TensorData, predict_logits, train_candidate


def stripes(size: int = 300) -> np.ndarray:
    """One-pixel stripes: all high frequency, what a plain interpolation aliases into false patterns."""
    return (np.indices((size, size))[1] % 2 * 255).astype(np.uint8)


def test_shrinking_is_antialiased_as_pil_does_it_unlike_a_plain_interpolation():
    image = stripes()
    ours = resize(torch.from_numpy(image).float()[None, None], 28)[0, 0].numpy()
    pil = np.asarray(Image.fromarray(image).resize((28, 28), Image.BILINEAR), np.float32)
    plain = F.interpolate(torch.from_numpy(image).float()[None, None], size=(28, 28), mode="bilinear")[0, 0].numpy()
    assert np.abs(ours - pil).max() < 1.0  # PIL rounds to uint8
    assert np.abs(plain - pil).max() > 100  # aliasing: plain sampling sees only one of the two stripes
    assert abs(ours.mean() - 127.5) < 1.0 and ours.std() < 2.0


def test_growing_and_odd_shapes_match_pil_too():
    rng = np.random.default_rng(0)
    for shape in [(20, 17), (97, 131), (28, 28)]:
        image = rng.integers(0, 256, shape).astype(np.uint8)
        ours = resize(torch.from_numpy(image).float()[None, None], 28)[0, 0].numpy()
        pil = np.asarray(Image.fromarray(image).resize((28, 28), Image.BILINEAR), np.float32)
        assert np.abs(ours - pil).max() < 1.0, shape


def test_rows_of_joined_parts_are_the_rows_of_the_whole_normalized(tmp_path):
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (n, 3, 4, 4)).astype(np.uint8) for n in (5, 7))
    mean, std = statistics([a, b])
    whole = np.concatenate([a, b])
    assert np.allclose(mean, whole.reshape(12, 3, -1).transpose(1, 0, 2).reshape(3, -1).mean(1) / 255)
    joined = Pixels((a,), tuple(mean), tuple(std)).joined(Pixels((b,), tuple(mean), tuple(std)))
    rows = torch.tensor([11, 0, 6, 4, 5])
    expected = (torch.from_numpy(whole[rows.numpy()]).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    assert joined.shape == (12, 3, 4, 4) and torch.equal(joined[rows], expected)
    assert torch.equal(joined[3:8], joined[torch.arange(3, 8)])
    np.save(tmp_path / "b.npy", b)
    on_disk = Pixels((a,), tuple(mean), tuple(std)).joined(Pixels((open_cache(tmp_path / "b.npy", 0),), tuple(mean),
                                                                  tuple(std)))
    assert torch.equal(on_disk[rows], expected) and torch.equal(on_disk[3:8], joined[3:8])


def test_a_memory_mapped_cache_trains_and_predicts_exactly_as_the_same_pixels_in_memory(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (96, 20, 20)).astype(np.uint8)
    labels = np.arange(96) % 3
    images[labels == 0, :, :5] = 255  # something to learn
    pre = Preprocessor.fit(images, labels, 12)
    pixels = to_pixels(images, 1, 12)
    np.save(tmp_path / "cache.npy", pixels)
    stats = (tuple(pre.mean), tuple(pre.std))
    in_memory, mapped = Pixels((pixels,), *stats), Pixels((open_cache(tmp_path / "cache.npy", 0),), *stats)
    assert isinstance(mapped.parts[0], CacheFile) and isinstance(open_cache(tmp_path / "cache.npy"), np.ndarray)
    y = pre.encode(labels)
    graph = initial_graph((1, 12, 12), 3, width=8)
    config = TrainConfig(max_epochs=2, batch_size=16, threads=1)
    ram, disk = (train_candidate(graph, None, TensorData(x, y, x, y), config, seed=3) for x in (in_memory, mapped))
    assert [h["train_loss"] for h in ram.history] == [h["train_loss"] for h in disk.history]
    assert all(torch.equal(ram.state[k], disk.state[k]) for k in ram.state)
    model = build_module(graph)
    model.load_state_dict(ram.state)
    assert torch.equal(predict_logits(model, mapped), predict_logits(model, pre.transform(images)))
    digest = [hashlib.sha256() for _ in range(2)]
    in_memory.digest(digest[0]), mapped.digest(digest[1])
    assert digest[0].hexdigest() == digest[1].hexdigest()



def test_a_cache_written_chunk_by_chunk_reads_back_whole_and_a_short_one_is_refused(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (10, 3, 5, 5)).astype(np.uint8)
    write_cache(tmp_path / "c.npy", pixels.shape, (pixels[i : i + 4] for i in range(0, 10, 4)))
    assert np.array_equal(open_cache(tmp_path / "c.npy"), pixels)
    on_disk = open_cache(tmp_path / "c.npy", in_memory_bytes=0)
    assert np.array_equal(on_disk, pixels) and np.array_equal(on_disk[2:9:3], pixels[2:9:3])
    assert np.array_equal(on_disk[np.array([9, 0, 4, 4, -1])], pixels[[9, 0, 4, 4, -1]])
    with pytest.raises(IndexError, match="out of range for 10 images"):
        on_disk[np.array([10])]
    (tmp_path / "t.npy").write_bytes((tmp_path / "c.npy").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        CacheFile(tmp_path / "t.npy")
    with pytest.raises(ValueError, match="wrote 8 images of the 10"):
        write_cache(tmp_path / "d.npy", pixels.shape, iter([pixels[:8]]))


def test_images_already_at_the_size_are_copied_exactly_as_the_adapter_would_compute_them():
    from automl.data.preprocess import InputAdapter, pixel_batches

    rng = np.random.default_rng(3)
    for channels, shape in ((3, (12, 12, 3)), (1, (12, 12)), (1, (12, 12, 3)), (3, (20, 16, 3))):
        images = [rng.integers(0, 256, shape).astype(np.uint8) for _ in range(5)]
        adapter = InputAdapter(channels, 12, [0.0] * channels, [1.0] * channels)
        chw = torch.from_numpy(np.stack([np.atleast_3d(i).transpose(2, 0, 1) for i in images]))
        expected = adapter.pixels(chw).round().clamp(0, 255).to(torch.uint8).numpy()
        assert np.array_equal(np.concatenate(list(pixel_batches(images, channels, 12))), expected), (channels, shape)


def test_decoded_images_of_one_shape_come_as_one_array_and_mixed_ones_as_a_list(tmp_path):
    from automl.data.images import read_rows_images
    from automl.data.labels import Row

    sizes = [(8, 8), (8, 8), (5, 7), (8, 8)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w), i, np.uint8)).save(tmp_path / f"{i}.png")
    rows = [Row(i + 2, f"{i}.png", "a") for i in range(4)]
    same = read_rows_images(rows[:2], tmp_path, tmp_path / "labels.csv")
    assert isinstance(same, np.ndarray) and same.shape == (2, 8, 8) and same[1].max() == 1
    mixed = read_rows_images(rows, tmp_path, tmp_path / "labels.csv")
    assert [m.shape for m in mixed] == sizes and [int(m[0, 0]) for m in mixed] == [0, 1, 2, 3]
