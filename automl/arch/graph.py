"""Architectures as plain data, and the one builder from that data to a ``torch.nn.Module``.

A graph is a list of layer specs in topological order. Each layer has a stable integer id and the ids
of its inputs (0 is the image). Stable ids are the point: a morphism that inserts or widens a layer
keeps every other id, so a child inherits its parent's weights by name (``L<id>.*``).

The data side imports no torch: graphs are compared, hashed, serialized and edited without it.
A graph also carries its ``tuning``: training hyperparameters the search mutates along with the layers
(``automl.arch.morph``), so that a child inherits them from its parent as it inherits its weights.
The last layer is the seed's Softmax; the built module returns the logits that feed it, because the
softmax is folded into the cross-entropy loss in training and applied by ``predict_proba`` and exports.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

INPUT_ID = 0
NEEDS_FEATURE_MAP = {"conv", "batchnorm", "maxpool", "global_avg_pool"}
LAYER_TYPES = {"conv", "batchnorm", "relu", "maxpool", "global_avg_pool", "dropout", "dense", "add", "concat",
               "softmax"}
Shape = tuple[int, ...]  # (C, H, W) for feature maps, (units,) after global pooling
_SHORT = {"learning_rate": "lr", "weight_decay": "wd"}  # tuning steps as ``describe`` shows them


@dataclass(frozen=True)
class Layer:
    """One operation: ``type`` from LAYER_TYPES, its ``inputs`` (layer ids) and its hyper-parameters."""

    id: int
    type: str
    inputs: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "inputs": list(self.inputs), "params": dict(self.params)}


@dataclass
class Graph:
    """An architecture: input shape, number of classes, layers, the operations that produced it, and
    its ``tuning``: training hyperparameters as powers of two of the params' values
    (``{"learning_rate": -1}``: half the learning rate; a name left out: step 0; applied by
    ``automl.training.protocol.tuned``). Why steps and not values: a search's settings stay the base
    (a user's ``train.learning_rate`` still means what it says), the steps are small integers the edit
    distance compares, and the builder ignores them."""

    input_shape: Shape
    n_classes: int
    layers: list[Layer]
    history: list[dict[str, Any]] = field(default_factory=list)
    tuning: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.validate()

    # --- structure -------------------------------------------------------------------------
    def layer(self, layer_id: int) -> Layer:
        for layer in self.layers:
            if layer.id == layer_id:
                return layer
        raise KeyError(f"no layer with id {layer_id}")

    @property
    def output_id(self) -> int:
        return self.layers[-1].id

    def next_id(self) -> int:
        return max(layer.id for layer in self.layers) + 1

    def copy(self) -> "Graph":
        """An independent copy: layers get their own params dicts, history its own list. Not a
        deepcopy, which dominated the search's time (thousands of morphs per proposal)."""
        twin = object.__new__(Graph)
        twin.input_shape = self.input_shape
        twin.n_classes = self.n_classes
        twin.layers = [Layer(l.id, l.type, l.inputs, dict(l.params)) for l in self.layers]
        twin.history = list(self.history)  # entries are never edited once recorded, so they are shared
        twin.tuning = dict(self.tuning)
        return twin

    def validate(self) -> None:
        """Check ids, ordering, types and that every shape is computable; raise ValueError if not."""
        seen = {INPUT_ID}
        for layer in self.layers:
            if layer.type not in LAYER_TYPES:
                raise ValueError(f"layer {layer.id}: unknown type {layer.type!r}")
            if layer.id in seen:
                raise ValueError(f"layer id {layer.id} is used twice")
            missing = [i for i in layer.inputs if i not in seen]
            if missing or not layer.inputs:
                raise ValueError(f"layer {layer.id}: inputs {list(layer.inputs)} must name earlier layers")
            seen.add(layer.id)
        self.shapes()

    def shapes(self) -> dict[int, Shape]:
        """Output shape of every layer (and of the input, id 0)."""
        shapes: dict[int, Shape] = {INPUT_ID: self.input_shape}
        for layer in self.layers:
            shapes[layer.id] = _output_shape(layer, [shapes[i] for i in layer.inputs], self.n_classes)
        return shapes

    def param_count(self) -> int:
        """Trainable parameters, computed from the specs alone (no torch)."""
        shapes = self.shapes()
        total = 0
        for layer in self.layers:
            cin = shapes[layer.inputs[0]][0]
            if layer.type == "conv":
                k, f = layer.params["kernel_size"], layer.params["filters"]
                total += k * k * cin * f + f
            elif layer.type == "dense":
                total += cin * layer.params["units"] + layer.params["units"]
            elif layer.type == "batchnorm":
                total += 2 * cin
        return total

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``conv64-pool-conv64-pool-gap-dense64-dense10``."""
        short = {"conv": "conv{filters}", "dense": "dense{units}", "maxpool": "pool", "global_avg_pool": "gap",
                 "add": "add", "concat": "cat"}
        layers = "-".join(short[l.type].format(**l.params) for l in self.layers if l.type in short)
        steps = " ".join(f"{_SHORT.get(name, name)}{'*' if step > 0 else '/'}{2 ** abs(step)}"
                         for name, step in sorted(self.tuning.items()) if step)
        return f"{layers} ({steps})" if steps else layers  # e.g. "... (lr/2 wd*4)"

    def step(self, name: str) -> int:
        """The tuning step of hyperparameter ``name`` (0: the params' value)."""
        return self.tuning.get(name, 0)

    # --- serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``tuning`` only where a step is set, so an untuned graph is written as before."""
        d = {
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "layers": [layer.to_dict() for layer in self.layers],
            "history": copy.deepcopy(self.history),
        }
        tuning = {name: step for name, step in sorted(self.tuning.items()) if step}
        return {**d, "tuning": tuning} if tuning else d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Graph":
        layers = [Layer(int(l["id"]), l["type"], tuple(int(i) for i in l["inputs"]), dict(l.get("params", {})))
                  for l in d["layers"]]
        tuning = {str(k): int(v) for k, v in d.get("tuning", {}).items()}
        return cls(tuple(d["input_shape"]), int(d["n_classes"]), layers, list(d.get("history", [])), tuning)

    @classmethod
    def from_json(cls, text: str) -> "Graph":
        return cls.from_dict(json.loads(text))


def _output_shape(layer: Layer, ins: list[Shape], n_classes: int) -> Shape:
    first = ins[0]
    t, p = layer.type, layer.params
    if t in NEEDS_FEATURE_MAP and len(first) != 3:
        raise ValueError(f"layer {layer.id} ({t}) needs a feature map, got shape {first}")
    if t == "conv":
        stride = p.get("stride", 1)
        return (p["filters"], -(-first[1] // stride), -(-first[2] // stride))
    if t == "maxpool":
        size = p.get("pool_size", 2)
        return (first[0], -(-first[1] // size), -(-first[2] // size))
    if t == "global_avg_pool":
        return (first[0],)
    if t == "dense":
        if len(first) != 1:
            raise ValueError(f"layer {layer.id} (dense) needs a vector, got shape {first}")
        return (p["units"],)
    if t == "add":
        if len(set(ins)) != 1:
            raise ValueError(f"layer {layer.id} (add) needs equal shapes, got {ins}")
        return first
    if t == "concat":
        if len({s[1:] for s in ins}) != 1:
            raise ValueError(f"layer {layer.id} (concat) needs equal spatial sizes, got {ins}")
        return (sum(s[0] for s in ins),) + first[1:]
    if t == "softmax" and first != (n_classes,):
        raise ValueError(f"softmax layer {layer.id} needs {n_classes} inputs, got {first}")
    return first  # batchnorm, relu, dropout, softmax keep the shape


def initial_graph(input_shape: Shape, n_classes: int, width: int = 64, n_blocks: int = 3,
                  dropout: float = 0.25) -> Graph:
    """The seed's starting network (Auto-Keras 0.4's CnnGenerator).

    ``n_blocks`` x (ReLU, BatchNorm, Conv2D 3x3, MaxPool 2x2), then GlobalAveragePooling, Dropout,
    Dense(width), ReLU, Dense(n_classes), Softmax.
    """
    layers: list[Layer] = []
    prev = INPUT_ID

    def add(kind: str, **params: Any) -> None:
        nonlocal prev
        layer = Layer(len(layers) + 1, kind, (prev,), params)
        layers.append(layer)
        prev = layer.id

    for _ in range(n_blocks):
        add("relu")
        add("batchnorm")
        add("conv", filters=width, kernel_size=3, stride=1)
        add("maxpool", pool_size=2)
    add("global_avg_pool")
    add("dropout", rate=dropout)
    add("dense", units=width)
    add("relu")
    add("dense", units=n_classes)
    add("softmax")
    return Graph(tuple(input_shape), n_classes, layers, [])


def with_classes(graph: Graph, n_classes: int) -> Graph:
    """``graph`` with its classification head (the dense layer the softmax reads) giving ``n_classes``
    outputs; every other layer as it is. For a network reused on data with other classes."""
    softmax = graph.layers[-1]
    head = graph.layer(softmax.inputs[0])
    if softmax.type != "softmax" or head.type != "dense":
        raise ValueError("the graph does not end in a dense layer and a softmax")
    layers = [Layer(l.id, l.type, l.inputs, {**l.params, "units": n_classes}) if l.id == head.id
              else Layer(l.id, l.type, l.inputs, dict(l.params)) for l in graph.layers]
    return Graph(graph.input_shape, n_classes, layers, list(graph.history), dict(graph.tuning))
