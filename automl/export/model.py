"""Export: a network with its preprocessing built in, as TorchScript and ONNX, plus a labels file.

The exported module takes raw pixels, float32 (N, C, H, W) with values 0..255, C in {1, 3}, any H and
W (one size per batch), and returns class probabilities (N, K). ``labels.json`` maps output index to
the user's label. Neither file needs automl to run: ``torch.jit.load`` or onnxruntime is enough.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl.data.preprocess import InputAdapter, Preprocessor
from automl.fileio import serialized, write_bytes, write_json

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
INPUT_DOC = "float32 (N, C, H, W), pixel values 0..255, C = 1 or 3, any H and W; output (N, K) probabilities"


class ExportModule(nn.Module):
    """Preprocessing, network and softmax in one module."""

    def __init__(self, adapter: InputAdapter, network: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(self.adapter(x)), dim=1)


def export_model(network: nn.Module, preprocessor: Preprocessor, out_dir: str | Path,
                 extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write TorchScript, ONNX and labels files into ``out_dir`` (each atomically); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = ExportModule(preprocessor.adapter(), copy.deepcopy(network)).eval()
    module.requires_grad_(False)  # outputs then need no .detach() in the user's code
    example = torch.full((1, preprocessor.channels, preprocessor.image_size, preprocessor.image_size), 127.0)
    paths = {"torchscript": out / TORCHSCRIPT_FILE, "onnx": out / ONNX_FILE, "labels": out / LABELS_FILE}
    with torch.no_grad():
        traced = torch.jit.trace(module, example)
    write_bytes(paths["torchscript"], serialized(lambda buffer: torch.jit.save(traced, buffer)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter, still supported
        onnx = serialized(lambda buffer: torch.onnx.export(
            module, (example,), buffer, input_names=["images"], output_names=["probabilities"],
            dynamic_axes={"images": {0: "batch", 1: "channels", 2: "height", 3: "width"},
                          "probabilities": {0: "batch"}}, dynamo=False, opset_version=17))
    write_bytes(paths["onnx"], onnx)
    write_json(paths["labels"], {"labels": preprocessor.classes, "input": INPUT_DOC,
                                 "image_size": preprocessor.image_size, "channels": preprocessor.channels,
                                 **(extra or {})})
    return paths


def read_labels(path: str | Path) -> list[Any]:
    return json.loads(Path(path).read_text())["labels"]
