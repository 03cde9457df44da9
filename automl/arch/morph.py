"""Network morphisms on architectures as data (the idea of Auto-Keras 0.4's ``net_transformer``).

Each operation is a small pure function: a graph in, a NEW graph out, with the *completed* operation
spec appended to ``history``. The completed spec holds every random choice (new width, the units that
new units replicate, kernel size) and every new layer id, for two reasons: applying it again rebuilds
the same child (so a search can be replayed from its log), and ``automl.arch.inherit`` can compute the
child's weights from the parent's state dict and the child alone. Existing layer ids are never
changed, so untouched layers keep their weights by name.

Besides the layers, three operations tune how a candidate trains: its learning rate and weight decay
(a step of a power of two in ``Graph.tuning``) and its dropout rate. They change no weight and nothing the
network computes at inference, so they are function-preserving; a child inherits its parent's settings
as it inherits its weights, so a lineage carries what training suited it. Searchers use them only
under ``search.tune_training``: measured level with the architecture morphs alone (README).

No torch here: the searcher edits, hashes and compares graphs without it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from automl.arch.channels import Channels, ancestors, channel_flow, consumers, conv_count, logits_id, width_key
from automl.arch.graph import INPUT_ID, Graph, Layer, Shape

Spec = dict[str, Any]
KERNEL_SIZES = (3, 5)
MIN_NARROW = 8
SKIP_FROM = {"relu", "maxpool", "add", "concat"}  # block outputs a skip may start from
SKIP_TO = {"conv", "relu", "maxpool", "add", "concat"}  # where it may be merged in
TUNING_STEPS = {"learning_rate": (-3, 2), "weight_decay": (-4, 4)}  # each one's lowest and highest step
DROPOUT_STEP, MAX_DROPOUT = 0.125, 0.5


@dataclass(frozen=True)
class MorphLimits:
    """Bounds on what a search may grow into; shrink operations are never limited."""

    max_depth: int = 12  # number of conv layers in the graph (skip convs count too)
    max_width: int = 512  # filters/units of any conv/dense, and channels of a new concat
    allowed: tuple[str, ...] | None = None  # None: every operation


UNLIMITED = MorphLimits(max_depth=10**9, max_width=10**9)  # replaying a recorded spec: structure only


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
        # skip_concat only where the extra channels fit through to the next conv or dense
        if op == "skip_add" or channel_flow(graph, b, Channels((0, -1), 1), None, shapes) is not None:
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


def _tuning_candidates(graph: Graph, limits: MorphLimits, op: str) -> Iterator[Spec]:
    low, high = TUNING_STEPS[op]
    for step in (graph.step(op) - 1, graph.step(op) + 1):
        if low <= step <= high:
            yield {"op": op, "step": step}


def _dropout_candidates(graph: Graph, limits: MorphLimits, op: str) -> Iterator[Spec]:
    for layer in graph.layers:
        if layer.type == "dropout":
            for rate in (layer.params["rate"] - DROPOUT_STEP, layer.params["rate"] + DROPOUT_STEP):
                if -1e-9 < rate < MAX_DROPOUT + 1e-9:
                    yield {"op": op, "layer": layer.id, "rate": round(max(rate, 0.0), 6)}


def possible_morphs(graph: Graph, limits: MorphLimits = MorphLimits()) -> list[Spec]:
    """Every valid operation on ``graph`` within ``limits``: op, target layer ids, and (for width
    changes) the new width, which is a consequence of the limits rather than a random choice."""
    return [spec for op in _allowed(limits) for spec in MORPHS[op].candidates(graph, limits, op)]


# --- editing helpers --------------------------------------------------------------------------
def _rewire(layers: list[Layer], old: int, new: int) -> list[Layer]:
    """Every reader of ``old`` reads ``new`` instead (call before inserting layers that read ``old``)."""
    return [Layer(l.id, l.type, tuple(new if i == old else i for i in l.inputs), dict(l.params))
            if old in l.inputs else l for l in layers]


def _insert_after(layers: list[Layer], anchor: int, new: list[Layer]) -> list[Layer]:
    at = next(k for k, l in enumerate(layers) if l.id == anchor) + 1
    return layers[:at] + new + layers[at:]


def _with_param(layers: list[Layer], layer_id: int, key: str, value: Any) -> list[Layer]:
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


def _retune(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """A training hyperparameter one step up or down (``Graph.tuning``, set by ``_applied``); the
    network is untouched."""
    return list(graph.layers), {"op": spec["op"], "old_step": graph.step(spec["op"]), "step": int(spec["step"])}


def _dropout(graph: Graph, spec: Spec, rng: random.Random) -> Result:
    """Another dropout rate: dropout is the identity at inference, so the child computes what its parent did."""
    layer = graph.layer(spec["layer"])
    rate = float(spec["rate"])
    if layer.type != "dropout" or not 0.0 <= rate < 1.0:
        raise ValueError(f"cannot set dropout rate {rate} on layer {layer.id} ({layer.type})")
    layers = _with_param(graph.layers, layer.id, "rate", rate)
    return layers, {"op": spec["op"], "layer": layer.id, "old_rate": layer.params["rate"], "rate": rate}


@dataclass(frozen=True)
class Morph:
    """One operation, declared once: the spec keys naming its targets, whether the child computes
    what its parent did (once ``automl.arch.inherit`` moved the weights, by the weight rule registered
    there under the same name), where it applies (``candidates``) and the graph edit itself (``edit``).
    ``tuning``: it sets the graph's tuning step of its own name (a training hyperparameter)."""

    name: str
    targets: tuple[str, ...]
    preserving: bool
    candidates: Callable[[Graph, MorphLimits, str], Iterator[Spec]]
    edit: Callable[[Graph, Spec, random.Random], Result]
    tuning: bool = False


MORPHS: dict[str, Morph] = {m.name: m for m in (
    Morph("deeper_conv", ("after",), True, _deeper_candidates, _deeper_conv),
    Morph("deeper_dense", ("after",), True, _deeper_candidates, _deeper_dense),
    Morph("wider_conv", ("layer",), True, _resize_candidates, _wider),
    Morph("wider_dense", ("layer",), True, _resize_candidates, _wider),
    Morph("skip_add", ("from", "to"), True, _skip_candidates, _skip_add),
    Morph("skip_concat", ("from", "to"), True, _skip_candidates, _skip_concat),
    Morph("shrink_remove", ("layer",), False, _remove_candidates, _shrink_remove),
    Morph("shrink_narrow", ("layer",), False, _resize_candidates, _narrow),
    Morph("learning_rate", ("step",), True, _tuning_candidates, _retune, tuning=True),
    Morph("weight_decay", ("step",), True, _tuning_candidates, _retune, tuning=True),
    Morph("dropout", ("layer", "rate"), True, _dropout_candidates, _dropout),
)}
OPERATIONS = tuple(MORPHS)
PRESERVING = tuple(name for name, m in MORPHS.items() if m.preserving)
TRAINING = (*TUNING_STEPS, "dropout")  # how a candidate trains, not its layers (``search.tune_training``)
ARCHITECTURE = tuple(op for op in OPERATIONS if op not in TRAINING)


def _allowed(limits: MorphLimits) -> list[str]:
    return [op for op in OPERATIONS if limits.allowed is None or op in limits.allowed]


def _check_target(graph: Graph, spec: Spec) -> None:
    """Refuse a spec whose targets are not structurally valid here (limits aside: a replayed spec
    must apply whatever limits the search used)."""
    op = spec.get("op")
    if op not in MORPHS:
        raise ValueError(f"unknown operation {op!r}; expected one of {OPERATIONS}")
    keys = MORPHS[op].targets
    target = tuple(spec.get(k) for k in keys)
    if not any(tuple(c[k] for k in keys) == target for c in MORPHS[op].candidates(graph, UNLIMITED, op)):
        raise ValueError(f"{op} is not applicable to {dict(zip(keys, target))} on {graph.describe()}")


def apply_morph(graph: Graph, spec: Spec, rng: random.Random | None = None) -> Graph:
    """A new graph with ``spec`` applied and completed in ``history``; ``graph`` is left untouched.

    Missing random parts (kernel size, replicated units) are drawn from ``rng`` (a fixed
    ``random.Random(0)`` if None); a completed spec reproduces the same child.
    """
    _check_target(graph, spec)
    return _applied(graph, spec, rng or random.Random(0))


def _applied(graph: Graph, spec: Spec, rng: random.Random) -> Graph:
    """``spec`` applied to a copy of ``graph``, unchecked: for a spec that its operation's ``candidates``
    just enumerated on this graph (checking it would enumerate them a second time)."""
    parent, morph = graph.copy(), MORPHS[spec["op"]]
    layers, done = morph.edit(parent, dict(spec), rng)
    tuning = {**parent.tuning, morph.name: done["step"]} if morph.tuning else parent.tuning
    return Graph(parent.input_shape, parent.n_classes, layers, parent.history + [done], tuning)


def random_morph(graph: Graph, rng: random.Random, limits: MorphLimits = MorphLimits(),
                 ops: tuple[str, ...] | list[str] | None = None) -> Graph | None:
    """One random valid morph, or None. The operation is drawn first (uniformly among those with a
    valid target), then its target, so the many (A, B) pairs of skip operations do not crowd out the
    others; only the drawn operation's targets are enumerated, which keeps the acquisition cheap."""
    allowed = [op for op in _allowed(limits) if ops is None or op in ops]
    for op in rng.sample(allowed, len(allowed)):
        specs = list(MORPHS[op].candidates(graph, limits, op))
        if specs:
            return _applied(graph, rng.choice(specs), rng)
    return None
