"""The one builder from a ``Graph`` (plain data) to a ``torch.nn.Module``.

Parameters live under ``L<layer id>`` so that a morphed child, which keeps its parent's layer ids,
keeps the parent's weights by name; ``automl.arch.inherit`` computes the rest, and training loads the
result strictly (a missing or misshapen tensor is an error, never a silent re-initialization).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from automl.arch.graph import INPUT_ID, Graph, Layer


def _module_for(layer: Layer, in_channels: int) -> nn.Module | None:
    p = layer.params
    if layer.type == "conv":
        k = p["kernel_size"]
        return nn.Conv2d(in_channels, p["filters"], k, stride=p.get("stride", 1), padding=k // 2)
    if layer.type == "batchnorm":
        return nn.BatchNorm2d(in_channels)
    if layer.type == "dense":
        return nn.Linear(in_channels, p["units"])
    if layer.type == "dropout":
        return nn.Dropout(p["rate"])
    if layer.type == "maxpool":
        return nn.MaxPool2d(p.get("pool_size", 2), ceil_mode=True)
    if layer.type == "relu":
        return nn.ReLU()
    return None  # global_avg_pool, add, concat, softmax: stateless, handled in forward


class GraphModule(nn.Module):
    """Runs the layers in order; returns the logits (the input of the final softmax layer)."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        shapes = graph.shapes()
        self.order = [(l.id, l.type, tuple(l.inputs)) for l in graph.layers if l.type != "softmax"]
        self.output_id = graph.layers[-2].id if graph.layers[-1].type == "softmax" else graph.output_id
        self.ops = nn.ModuleDict()
        for layer in graph.layers:
            module = _module_for(layer, shapes[layer.inputs[0]][0])
            if module is not None:
                self.ops[f"L{layer.id}"] = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {INPUT_ID: x}
        for layer_id, kind, inputs in self.order:
            if kind == "global_avg_pool":
                out = values[inputs[0]].mean(dim=(2, 3))
            elif kind == "add":
                out = values[inputs[0]]
                for i in inputs[1:]:
                    out = out + values[i]
            elif kind == "concat":
                out = torch.cat([values[i] for i in inputs], dim=1)
            else:
                out = self.ops[f"L{layer_id}"](values[inputs[0]])
            values[layer_id] = out
        return values[self.output_id]


def build_module(graph: Graph) -> GraphModule:
    return GraphModule(graph)


class EnsembleModule(nn.Module):
    """Networks whose class probabilities are averaged. Returns the log of the average, so it stands
    wherever one network's logits do: a softmax of it gives the averaged probabilities back, and its
    cross-entropy is that of the average."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(dim=0)
        return torch.log(probabilities.clamp_min(1e-12))


class ShiftedViews(nn.Module):
    """A network that reads each image as several copies shifted by up to ``shift`` pixels (zero-padded,
    as the training crops pad) and, with ``flip``, their mirror images, and averages their class
    probabilities. Returns the log of the average, like ``EnsembleModule``. Plain tensor ops, so it
    traces into TorchScript and ONNX with the network inside it."""

    def __init__(self, network: nn.Module, shift: int, flip: bool = False) -> None:
        super().__init__()
        self.network = network
        self.shift, self.flip = shift, flip
        self.offsets = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, (h, w) = self.shift, x.shape[-2:]
        padded = F.pad(x, (s, s, s, s))
        views = [padded[:, :, s + dy : s + dy + h, s + dx : s + dx + w] for dy, dx in self.offsets]
        if self.flip:
            views += [v.flip(3) for v in views]
        probabilities = torch.stack([torch.softmax(self.network(v), dim=1) for v in views]).mean(dim=0)
        return torch.log(probabilities.clamp_min(1e-12))
