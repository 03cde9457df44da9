"""Graph queries and how a change of channels travels through a graph: shared by the validity checks
of ``automl.arch.morph`` and the weight transfer of ``automl.arch.inherit``. No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from automl.arch.graph import INPUT_ID, Graph, Layer, Shape

CHANNELWISE = {"relu", "batchnorm", "maxpool", "dropout", "global_avg_pool"}  # channel j in -> channel j out


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
