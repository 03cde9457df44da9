"""Network morphisms on architectures as data (the idea of Auto-Keras 0.4's ``net_transformer``).

Each operation is a small pure function: a graph in, a NEW graph out, with the *completed* operation
spec appended to ``history``. The completed spec holds every random choice (new width, the units that
new units replicate, kernel size) and every new layer id, for two reasons: applying it again rebuilds
the same child (so a search can be replayed from its log), and ``automl.arch.inherit`` can compute the
child's weights from the parent's state dict and the child alone. Existing layer ids are never
changed, so untouched layers keep their weights by name.

No torch here: the searcher edits, hashes and compares graphs without it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from automl.arch.graph import INPUT_ID, Graph, Layer, Shape

Spec = dict[str, Any]
OPERATIONS = ("deeper_conv", "deeper_dense", "wider_conv", "wider_dense", "skip_add", "skip_concat",
              "shrink_remove", "shrink_narrow")
PRESERVING = OPERATIONS[:6]  # the child computes what its parent did, once inherit.py moved the weights
KERNEL_SIZES = (3, 5)
MIN_NARROW = 8
CHANNELWISE = {"relu", "batchnorm", "maxpool", "dropout", "global_avg_pool"}  # channel j in -> channel j out
SKIP_FROM = {"relu", "maxpool", "add", "concat"}  # block outputs a skip may start from
SKIP_TO = {"conv", "relu", "maxpool", "add", "concat"}  # where it may be merged in
TARGETS = {"deeper_conv": ("after",), "deeper_dense": ("after",), "wider_conv": ("layer",),
           "wider_dense": ("layer",), "skip_add": ("from", "to"), "skip_concat": ("from", "to"),
           "shrink_remove": ("layer",), "shrink_narrow": ("layer",)}


@dataclass(frozen=True)
class MorphLimits:
    """Bounds on what a search may grow into; shrink operations are never limited."""

    max_depth: int = 12  # number of conv layers in the graph (skip convs count too)
    max_width: int = 512  # filters/units of any conv/dense, and channels of a new concat
    allowed: tuple[str, ...] = OPERATIONS


UNLIMITED = MorphLimits(max_depth=10**9, max_width=10**9)


# --- graph queries ---------------------------------------------------------------------------
def consumers(graph: Graph) -> dict[int, list[int]]:
    """Ids of the layers reading each layer's output (and the image's, id 0), in layer order."""
    out: dict[int, list[int]] = {INPUT_ID: [], **{layer.id: [] for layer in graph.layers}}
    for layer in graph.layers:
        for i in dict.fromkeys(layer.inputs):
            out[i].append(layer.id)
    return out


def ancestors(graph: Graph) -> dict[int, set[int]]:
    """Every layer id (0 included) that each layer depends on."""
    anc: dict[int, set[int]] = {INPUT_ID: set()}
    for layer in graph.layers:
        anc[layer.id] = set().union(*(anc[i] | {i} for i in layer.inputs))
    return anc


def logits_id(graph: Graph) -> int:
    """The classifier: the layer feeding the final softmax. Never widened, narrowed or removed."""
    last = graph.layers[-1]
    return last.inputs[0] if last.type == "softmax" else last.id


def conv_count(graph: Graph) -> int:
    return sum(layer.type == "conv" for layer in graph.layers)


def width_key(layer: Layer) -> str:
    return "filters" if layer.type == "conv" else "units"


# --- how channels move: shared by the validity checks here and the weight transfer in inherit ---
@dataclass(frozen=True)
class Channels:
    """A child tensor's channels in terms of the parent's tensor at the same place.

    ``index[j]`` is the parent channel that child channel j carries (-1: a new channel that every
    consumer must ignore, i.e. get zero weights for); ``old`` is the parent tensor's channel count.
    """

    index: tuple[int, ...]
    old: int

    @staticmethod
    def identity(n: int) -> "Channels":
        return Channels(tuple(range(n)), n)


@dataclass
class Flow:
    """Where a channel change travels: channel-wise layers and merges whose output changed
    (``outputs``), and the conv/dense layers whose input changed and stop it (``consumers``)."""

    outputs: dict[int, Channels]
    consumers: dict[int, Channels]


def channel_flow(graph: Graph, source: int, channels: Channels, first: set[int] | None = None,
                 shapes: dict[int, Shape] | None = None) -> Flow | None:
    """Follow a change of ``source``'s output channels down to the next conv/dense layers.

    ``first`` limits which consumers of ``source`` see the change (None: all). Returns None where
    the change cannot be absorbed: an ``add`` whose inputs would disagree, or the final output.
    ``shapes`` (``graph.shapes()``) may be passed by callers that follow many changes of one graph.
    """
    shapes = shapes or graph.shapes()
    flow = Flow({}, {})
    for layer in graph.layers:
        ins = [(channels if first is None or layer.id in first else None) if i == source else flow.outputs.get(i)
               for i in layer.inputs]
        if all(c is None for c in ins):
            continue
        if layer.type in ("conv", "dense"):
            flow.consumers[layer.id] = ins[0]
        elif layer.type in CHANNELWISE:
            flow.outputs[layer.id] = ins[0]
        elif layer.type == "concat":
            flow.outputs[layer.id] = _concat_channels(ins, [shapes[i][0] for i in layer.inputs])
        elif layer.type == "add" and all(c == ins[0] for c in ins):
            flow.outputs[layer.id] = ins[0]
        else:
            return None
    return flow


def _concat_channels(ins: list[Channels | None], sizes: list[int]) -> Channels:
    index: list[int] = []
    offset = 0
    for ch, n in zip(ins, sizes):
        ch = ch or Channels.identity(n)
        index += [k + offset if k >= 0 else -1 for k in ch.index]
        offset += ch.old
    return Channels(tuple(index), offset)


def _flows(graph: Graph, layer: Layer, shapes: dict[int, Shape]) -> bool:
    """Whether ``layer``'s width can change: its channels must reach conv/dense layers cleanly."""
    return layer.id != logits_id(graph) and channel_flow(graph, layer.id, Channels((0,), 1), None, shapes) is not None


# --- candidates (targets only, no random parts) ----------------------------------------------
def _deeper_candidates(graph: Graph, limits: MorphLimits, op: str) -> Iterator[Spec]:
    shapes = graph.shapes()
    rank = 3 if op == "deeper_conv" else 1
    if op == "deeper_conv" and conv_count(graph) >= limits.max_depth:
        return
    for layer in graph.layers:
        shape = shapes[layer.id]
        if layer.type == "relu" and len(shape) == rank and shape[0] <= limits.max_width \
                and layer.id != logits_id(graph):
            yield {"op": op, "after": layer.id}


def _resize_candidates(graph: Graph, limits: MorphLimits, op: str) -> Iterator[Spec]:
    kind = "conv" if op == "wider_conv" else "dense" if op == "wider_dense" else None
    shapes = graph.shapes()
    for layer in graph.layers:
        if layer.type not in ((kind,) if kind else ("conv", "dense")):
            continue
        n = layer.params[width_key(layer)]
        width = min(2 * n, limits.max_width) if kind else max(n // 2, MIN_NARROW)
        if (width > n if kind else width < n) and _flows(graph, layer, shapes):
            yield {"op": op, "layer": layer.id, "width": width}


def _skip_pairs(graph: Graph) -> Iterator[tuple[int, int]]:
    """(A, B): A a block output that B depends on through at least one conv, same spatial size."""
    shapes, anc = graph.shapes(), ancestors(graph)
    convs = [layer.id for layer in graph.layers if layer.type == "conv"]
    for b in graph.layers:
        if b.type not in SKIP_TO or len(shapes[b.id]) != 3:
            continue
        for a in graph.layers:
            if a.id == b.id:
                break
            if a.type in SKIP_FROM and a.id in anc[b.id] and shapes[a.id][1:] == shapes[b.id][1:] \
                    and any(a.id in anc[c] and (c == b.id or c in anc[b.id]) for c in convs):
                yield a.id, b.id


def _skip_candidates(graph: Graph, limits: MorphLimits, op: str) -> Iterator[Spec]:
    shapes = graph.shapes()
    if op == "skip_add" and conv_count(graph) >= limits.max_depth:
        return
    for a, b in _skip_pairs(graph):
        channels = shapes[b][0] + (shapes[a][0] if op == "skip_concat" else 0)
        if channels > limits.max_width:
            continue
        if op == "skip_add" or channel_flow(graph, b, Channels((0, -1), 1), None, shapes) is not None:  # extra channels fit
            yield {"op": op, "from": a, "to": b}


def _remove_candidates(graph: Graph, limits: MorphLimits, op: str) -> Iterator[Spec]:
    for layer in graph.layers:
        if layer.type in ("conv", "dense", "add", "concat") and layer.id != logits_id(graph):
            spec = {"op": op, "layer": layer.id}
            try:
                _shrink_remove(graph, spec, random.Random(0))
            except ValueError:
                continue
            yield spec


CANDIDATES: dict[str, Callable[[Graph, MorphLimits, str], Iterator[Spec]]] = {
    "deeper_conv": _deeper_candidates, "deeper_dense": _deeper_candidates, "wider_conv": _resize_candidates,
    "wider_dense": _resize_candidates, "skip_add": _skip_candidates, "skip_concat": _skip_candidates,
    "shrink_remove": _remove_candidates, "shrink_narrow": _resize_candidates}


def possible_morphs(graph: Graph, limits: MorphLimits = MorphLimits()) -> list[Spec]:
    """Every valid operation on ``graph`` within ``limits``: op, target layer ids, and (for width
    changes) the new width, which is a consequence of the limits rather than a random choice."""
    return [spec for op in OPERATIONS if op in limits.allowed for spec in CANDIDATES[op](graph, limits, op)]


# --- editing helpers --------------------------------------------------------------------------
def _rewire(layers: list[Layer], old: int, new: int) -> list[Layer]:
    """Every reader of ``old`` reads ``new`` instead (call before inserting layers that read ``old``)."""
    return [Layer(l.id, l.type, tuple(new if i == old else i for i in l.inputs), dict(l.params))
            if old in l.inputs else l for l in layers]


def _insert_after(layers: list[Layer], anchor: int, new: list[Layer]) -> list[Layer]:
    at = next(k for k, l in enumerate(layers) if l.id == anchor) + 1
    return layers[:at] + new + layers[at:]


def _with_param(layers: list[Layer], layer_id: int, key: str, value: int) -> list[Layer]:
    return [Layer(l.id, l.type, l.inputs, {**l.params, key: value}) if l.id == layer_id else l for l in layers]


def _new_ids(graph: Graph, spec: Spec, n: int) -> list[int]:
    """Fresh ids from ``graph.next_id()``, or the ones a completed spec already names."""
    ids = [int(i) for i in spec.get("new_ids", range(graph.next_id(), graph.next_id() + n))]
    used = {INPUT_ID} | {layer.id for layer in graph.layers}
    if len(ids) != n or len(set(ids)) != n or used & set(ids):
        raise ValueError(f"new_ids {ids} must be {n} distinct unused ids")
    return ids


# --- the operations: (graph, spec, rng) -> (layers, completed spec) ---------------------------
Result = tuple[list[Layer], Spec]


def _deeper_conv(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """Conv (identity) -> BatchNorm (identity) -> ReLU after a ReLU: its input is already >= 0,
    so the new ReLU changes nothing and the block computes the identity."""
    after, k = spec["after"], int(spec.get("kernel_size") or rng.choice(KERNEL_SIZES))
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {k}")
    conv, bn, relu = _new_ids(graph, spec, 3)
    channels = graph.shapes()[after][0]
    new = [Layer(conv, "conv", (after,), {"filters": channels, "kernel_size": k, "stride": 1}),
           Layer(bn, "batchnorm", (conv,), {}), Layer(relu, "relu", (bn,), {})]
    layers = _insert_after(_rewire(graph.layers, after, relu), after, new)
    return layers, {"op": spec["op"], "after": after, "kernel_size": k, "new_ids": [conv, bn, relu]}


def _deeper_dense(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """Dense (identity) -> ReLU after a ReLU on a vector: same argument as ``_deeper_conv``."""
    after = spec["after"]
    dense, relu = _new_ids(graph, spec, 2)
    new = [Layer(dense, "dense", (after,), {"units": graph.shapes()[after][0]}), Layer(relu, "relu", (dense,), {})]
    layers = _insert_after(_rewire(graph.layers, after, relu), after, new)
    return layers, {"op": spec["op"], "after": after, "new_ids": [dense, relu]}


def _wider(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """Net2Net: the new units copy randomly chosen old ones (``sources``); inherit.py divides the
    consumers' weights for a replicated unit by its number of copies."""
    layer = graph.layer(spec["layer"])
    old = layer.params[width_key(layer)]
    width = int(spec.get("width", 2 * old))
    sources = [int(s) for s in spec.get("sources") or [rng.randrange(old) for _ in range(width - old)]]
    if width <= old or len(sources) != width - old or not all(0 <= s < old for s in sources):
        raise ValueError(f"bad widening of layer {layer.id}: {old} -> {width} with sources {sources}")
    layers = _with_param(graph.layers, layer.id, width_key(layer), width)
    return layers, {"op": spec["op"], "layer": layer.id, "old_width": old, "width": width, "sources": sources}


def _skip_add(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """B + Conv1x1(A) with the conv all zeros: B's readers get B plus nothing."""
    a, b = spec["from"], spec["to"]
    conv, add = _new_ids(graph, spec, 2)
    new = [Layer(conv, "conv", (a,), {"filters": graph.shapes()[b][0], "kernel_size": 1, "stride": 1}),
           Layer(add, "add", (b, conv), {})]
    layers = _insert_after(_rewire(graph.layers, b, add), b, new)
    return layers, {"op": spec["op"], "from": a, "to": b, "new_ids": [conv, add]}


def _skip_concat(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """concat(B, A): B's channels come first, A's are new channels that consumers weigh by zero."""
    a, b = spec["from"], spec["to"]
    (cat,) = _new_ids(graph, spec, 1)
    layers = _insert_after(_rewire(graph.layers, b, cat), b, [Layer(cat, "concat", (b, a), {})])
    return layers, {"op": spec["op"], "from": a, "to": b, "new_ids": [cat]}


def _narrow(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """Keep the first ``width`` units; inherit.py keeps the matching weight slices."""
    layer = graph.layer(spec["layer"])
    old = layer.params[width_key(layer)]
    width = int(spec.get("width", max(old // 2, MIN_NARROW)))
    if not 1 <= width < old:
        raise ValueError(f"cannot narrow layer {layer.id} from {old} to {width}")
    layers = _with_param(graph.layers, layer.id, width_key(layer), width)
    return layers, {"op": spec["op"], "layer": layer.id, "old_width": old, "width": width}


def _block_chain(graph: Graph, head: Layer, readers: dict[int, list[int]]) -> list[int]:
    """A conv/dense with the BatchNorm and ReLU that only it feeds (the shape a deeper op adds)."""
    chain = [head.id]
    for kind in (("batchnorm", "relu") if head.type == "conv" else ("relu",)):
        nxt = readers[chain[-1]]
        if len(nxt) == 1 and graph.layer(nxt[0]).type == kind and nxt[0] != logits_id(graph):
            chain.append(nxt[0])
    return chain


def _merge_feeders(graph: Graph, merge: Layer, readers: dict[int, list[int]]) -> list[int]:
    """The merge plus every layer that only feeds it (e.g. a skip's 1x1 conv), main input excluded."""
    removed = {merge.id}
    for layer in reversed(graph.layers[:graph.layers.index(merge)]):
        if layer.id != merge.inputs[0] and readers[layer.id] and set(readers[layer.id]) <= removed:
            removed.add(layer.id)
    return [layer.id for layer in graph.layers if layer.id in removed]


def _shrink_remove(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """Remove a conv/dense block that keeps the shape, or a skip connection (a merge and the layers
    only feeding it); readers of the removed part read its main input instead."""
    head, readers, shapes = graph.layer(spec["layer"]), consumers(graph), graph.shapes()
    if head.id == logits_id(graph) or head.type not in ("conv", "dense", "add", "concat"):
        raise ValueError(f"layer {head.id} ({head.type}) cannot be removed")
    kept = head.inputs[0]
    if head.type in ("add", "concat"):
        if len(head.inputs) < 2:
            raise ValueError(f"merge {head.id} has a single input")
        kind, removed = "skip", _merge_feeders(graph, head, readers)
    else:
        kind, removed = "block", _block_chain(graph, head, readers)
        if shapes[kept] != shapes[removed[-1]]:
            raise ValueError(f"removing {removed} would change the shape {shapes[removed[-1]]}")
    last = head.id if kind == "skip" else removed[-1]
    layers = [l for l in _rewire(graph.layers, last, kept) if l.id not in removed]
    if any(len(set(l.inputs)) < len(l.inputs) for l in layers):
        raise ValueError(f"removing {removed} would merge layer {kept} with itself")
    Graph(graph.input_shape, graph.n_classes, layers)  # raises ValueError if shapes no longer fit
    return layers, {"op": spec["op"], "layer": head.id, "kind": kind, "removed": removed, "kept_input": kept,
                    "consumers": readers[last], "old_channels": shapes[last][0]}


OPS: dict[str, Callable[[Graph, Spec, random.Random], Result]] = {
    "deeper_conv": _deeper_conv, "deeper_dense": _deeper_dense, "wider_conv": _wider, "wider_dense": _wider,
    "skip_add": _skip_add, "skip_concat": _skip_concat, "shrink_remove": _shrink_remove, "shrink_narrow": _narrow}


def _check_target(graph: Graph, spec: Spec) -> None:
    """Refuse a spec whose targets are not structurally valid here (limits aside: a replayed spec
    must apply whatever limits the search used)."""
    op = spec.get("op")
    if op not in OPS:
        raise ValueError(f"unknown operation {op!r}; expected one of {OPERATIONS}")
    keys = TARGETS[op]
    target = tuple(spec.get(k) for k in keys)
    if not any(tuple(c[k] for k in keys) == target for c in CANDIDATES[op](graph, UNLIMITED, op)):
        raise ValueError(f"{op} is not applicable to {dict(zip(keys, target))} on {graph.describe()}")


def apply_morph(graph: Graph, spec: Spec, rng: random.Random | None = None) -> Graph:
    """A new graph with ``spec`` applied and completed in ``history``; ``graph`` is left untouched.

    Missing random parts (kernel size, replicated units) are drawn from ``rng`` (a fixed
    ``random.Random(0)`` if None); a completed spec reproduces the same child.
    """
    _check_target(graph, spec)
    parent = graph.copy()
    layers, done = OPS[spec["op"]](parent, dict(spec), rng or random.Random(0))
    return Graph(parent.input_shape, parent.n_classes, layers, parent.history + [done])


def random_morph(graph: Graph, rng: random.Random, limits: MorphLimits = MorphLimits(),
                 ops: tuple[str, ...] | list[str] | None = None) -> Graph | None:
    """One random valid morph, or None. The operation is drawn first (uniformly among those with a
    valid target), then its target, so the many (A, B) pairs of skip operations do not crowd out the
    others; only the drawn operation's targets are enumerated, which keeps the acquisition cheap."""
    allowed = [op for op in OPERATIONS if op in limits.allowed and (ops is None or op in ops)]
    for op in rng.sample(allowed, len(allowed)):
        specs = list(CANDIDATES[op](graph, limits, op))
        if specs:
            return apply_morph(graph, rng.choice(specs), rng)
    return None
