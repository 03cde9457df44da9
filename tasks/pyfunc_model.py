"""MLflow "model from code": the exported TorchScript network behind ``mlflow.pyfunc``.

Self-contained on purpose (numpy and torch only, no automl import): MLflow copies this file into the
logged model, so ``mlflow.pyfunc.load_model`` works in any process that has torch.
``predict`` takes raw uint8 images, one array (N, H, W[, C]) or, for images of different sizes, an
object array of (H, W[, C]) arrays (the signature MLflow enforces), and returns their labels.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel


class TorchScriptImageModel(PythonModel):
    def load_context(self, context) -> None:
        self.module = torch.jit.load(context.artifacts["torchscript"], map_location="cpu").eval()
        with open(context.artifacts["labels"]) as handle:
            self.labels = json.load(handle)["labels"]

    def predict(self, context, model_input, params=None):
        """Labels, or with ``params={"probabilities": True}`` a DataFrame of class probabilities (one
        column per label) for the images in ``model_input``."""
        probs = np.stack([self._probabilities(np.asarray(img)) for img in _images(model_input)])
        if (params or {}).get("probabilities"):
            import pandas as pd

            return pd.DataFrame(probs, columns=[str(label) for label in self.labels])
        return np.asarray([self.labels[int(p.argmax())] for p in probs])

    def _probabilities(self, img: np.ndarray) -> np.ndarray:
        arr = img[:, :, None] if img.ndim == 2 else img[:, :, :3]
        x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))[None]
        with torch.no_grad():
            return self.module(x)[0].numpy()


def _images(model_input) -> list:
    """The images in what pyfunc (or ``mlflow models serve``) hands over: one array (N, H, W[, C]), a
    list of arrays, or a DataFrame with one column of image arrays. A DataFrame of plain numbers is
    refused: read as one image it would give one meaningless label."""
    if hasattr(model_input, "columns"):  # a pandas DataFrame
        if len(model_input.columns) == 1 and all(np.ndim(v) >= 2 for v in model_input.iloc[:, 0]):
            return [np.asarray(v) for v in model_input.iloc[:, 0]]
        raise ValueError("expected images: send a list of (H, W[, C]) arrays (JSON {\"inputs\": [...]}) or a "
                         "DataFrame with one column of such arrays, not a table of numbers.")
    return list(model_input) if isinstance(model_input, (list, tuple, np.ndarray)) else [model_input]


mlflow.models.set_model(TorchScriptImageModel())
