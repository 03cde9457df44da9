import numpy as np
import pytest
import torch

from automl.data.preprocess import Preprocessor
from automl.errors import DataError


def test_statistics_come_from_the_given_training_images_only():
    dark = np.zeros((10, 8, 8), np.uint8)
    bright = np.full((10, 8, 8), 255, np.uint8)
    pre = Preprocessor.fit(np.concatenate([dark, bright]), ["a"] * 10 + ["b"] * 10, image_size=8)
    assert pre.mean == pytest.approx([0.5]) and pre.std == pytest.approx([0.5])
    out = pre.transform(bright)
    assert out.shape == (10, 1, 8, 8) and torch.allclose(out, torch.ones_like(out))


def test_mixed_sizes_and_channels_resize_to_one_shape_in_rgb():
    images = [np.zeros((10, 14), np.uint8), np.full((30, 20, 3), 90, np.uint8), np.full((5, 5, 4), 9, np.uint8)]
    pre = Preprocessor.fit(images, [1, 2, 1], image_size=16)
    assert pre.channels == 3 and pre.classes == [1, 2]
    assert pre.transform(images).shape == (3, 3, 16, 16)


def test_labels_round_trip_in_the_users_label_space():
    pre = Preprocessor.fit(np.zeros((4, 6, 6), np.uint8), np.array(["cat", "dog", "cat", "emu"]), 6)
    idx = pre.encode(["dog", "emu"])
    assert idx.tolist() == [1, 2]
    assert list(pre.decode(idx)) == ["dog", "emu"]
    ints = Preprocessor.fit(np.zeros((2, 6, 6), np.uint8), np.array([7, 3]), 6)
    assert ints.decode(np.array([0, 1])).tolist() == [3, 7]
    with pytest.raises(DataError, match="not seen in training"):
        pre.encode(["zebra"])
    assert Preprocessor.from_dict(pre.to_dict()) == pre
