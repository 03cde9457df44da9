"""Datasets: a labels CSV plus images, validation of user data, the split, preprocessing to tensors,
and the embedded datasets. Ground floor: progress reporting is passed in, never imported."""

from automl.data.images import load_image_dataset

__all__ = ["load_image_dataset"]
