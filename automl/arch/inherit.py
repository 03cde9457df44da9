"""Weights for a morphed child, computed from its parent's state dict (the torch side of ``morph``).

The child's last ``history`` entry is the completed operation spec; it says which layers are new
and how channels were replicated, added or dropped, so this module needs neither the parent graph
nor any randomness. For the function-preserving operations the child computes exactly what the
parent did (up to float rounding of the Net2Net division) in eval mode; for shrink operations every
weight slice that still has a place is kept, which is the best start training can get.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from automl.arch.builder import build_module
from automl.arch.channels import Channels, channel_flow
from automl.arch.graph import Graph
from automl.arch.morph import MORPHS, apply_morph

State = dict[str, torch.Tensor]
BN_IDENTITY = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0}  # running_var: 1 - eps, set apart


def key(layer_id: int, name: str) -> str:
    """The builder's parameter name for ``name`` of layer ``layer_id``."""
    return f"ops.L{layer_id}.{name}"


def inherit_weights(child: Graph, parent_state: State) -> State:
    """The child's complete state dict: parent tensors by name where they fit, plus the values the
    last operation in ``child.history`` calls for. Tensors get the parent's float dtype."""
    module = build_module(child)
    eps = {name: m.eps for name, m in module.ops.items() if isinstance(m, torch.nn.BatchNorm2d)}
    dtype = next((v.dtype for v in parent_state.values() if v.is_floating_point()), torch.float32)
    out = {k: v.to(dtype) if v.is_floating_point() else v for k, v in module.state_dict().items()}
    for k, v in out.items():
        if k in parent_state and parent_state[k].shape == v.shape:
            out[k] = parent_state[k].detach().clone().to(v.dtype)
    done: set[str] = set()
    if child.history:
        spec = child.history[-1]
        if spec.get("op") not in RULES:
            raise ValueError(f"no weight transfer for operation {spec.get('op')!r}")
        RULES[spec["op"]](_Ctx(child, spec, parent_state, out, eps, done))
    _copy_leading_slices(parent_state, out, done)
    return out


def inherit_chain(parent: Graph, state: State, child: Graph) -> State:
    """Replay the morphs from ``parent`` to ``child`` (recorded in the child's history), carrying the
    weights through each, so the child starts computing what its trained parent computed."""
    graph = parent
    for spec in child.history[len(parent.history):]:
        graph = apply_morph(graph, spec)
        state = inherit_weights(graph, state)
    return state


@dataclass
class _Ctx:
    """What a rule needs: the child, its spec, the parent's tensors and the state being filled
    (``done``: the names a rule set, which the leading-slice fallback must leave alone)."""

    child: Graph
    spec: dict[str, Any]
    parent: State
    out: State
    eps: dict[str, float]  # BatchNorm eps by module name ("L<id>")
    done: set[str]

    def set(self, layer_id: int, name: str, value: torch.Tensor) -> None:
        k = key(layer_id, name)
        if value.shape != self.out[k].shape:
            raise ValueError(f"{k}: computed shape {tuple(value.shape)}, module has {tuple(self.out[k].shape)}")
        self.out[k] = value.to(self.out[k].dtype)
        self.done.add(k)

    def like(self, layer_id: int, name: str, fill: float = 0.0) -> torch.Tensor:
        return torch.full_like(self.out[key(layer_id, name)], fill)

    def identity_batchnorm(self, layer_id: int) -> None:
        """Exactly the identity in eval: (x - 0) / sqrt(1 - eps + eps) * 1 + 0."""
        for name, fill in BN_IDENTITY.items():
            self.set(layer_id, name, self.like(layer_id, name, fill))
        self.set(layer_id, "running_var", self.like(layer_id, "running_var", 1.0 - self.eps[f"L{layer_id}"]))


# --- tensor helpers -------------------------------------------------------------------------
def gather(t: torch.Tensor, index: tuple[int, ...], dim: int, fill: float = 0.0) -> torch.Tensor:
    """Slices ``index`` of ``t`` along ``dim``; -1 entries become ``fill``."""
    out = t.index_select(dim, torch.tensor([max(i, 0) for i in index], dtype=torch.long)).clone()
    new = [j for j, i in enumerate(index) if i < 0]
    if new:
        out.index_fill_(dim, torch.tensor(new, dtype=torch.long), fill)
    return out


def spread(t: torch.Tensor, ch: Channels, dim: int = 1) -> torch.Tensor:
    """Input weights for replicated / new channels: each copy of parent channel c gets c's weights
    divided by the number of copies (so their sum is unchanged); new channels (-1) get zeros."""
    counts = [0] * ch.old
    for i in ch.index:
        if i >= 0:
            counts[i] += 1
    div = torch.tensor([float(counts[i]) if i >= 0 else 1.0 for i in ch.index], dtype=t.dtype)
    shape = [1] * t.dim()
    shape[dim] = len(ch.index)
    return gather(t, ch.index, dim) / div.reshape(shape)


def _copy_leading_slices(parent: State, out: State, done: set[str]) -> None:
    """Where a tensor changed shape and no rule set it, keep the overlapping leading block."""
    for k, v in out.items():
        p = parent.get(k)
        if k in done or p is None or p.shape == v.shape or p.dim() != v.dim():
            continue
        block = tuple(slice(0, min(a, b)) for a, b in zip(p.shape, v.shape))
        v = v.clone()
        v[block] = p[block].to(v.dtype)
        out[k] = v


# --- rules, one per operation -----------------------------------------------------------------
def _apply_flow(ctx: _Ctx, source: int, ch: Channels, first: set[int] | None = None) -> None:
    """Move the channel change through BatchNorms (per-channel copies, identity for new channels)
    into the input weights of the next conv/dense layers."""
    flow = channel_flow(ctx.child, source, ch, first)
    if flow is None:
        return  # only for shrink: leading slices are then the best we have
    for layer_id, out_ch in flow.outputs.items():
        if ctx.child.layer(layer_id).type == "batchnorm":
            eps = ctx.eps[f"L{layer_id}"]
            for name, fill in {**BN_IDENTITY, "running_var": 1.0 - eps}.items():
                ctx.set(layer_id, name, gather(ctx.parent[key(layer_id, name)], out_ch.index, 0, fill))
    for layer_id, in_ch in flow.consumers.items():
        ctx.set(layer_id, "weight", spread(ctx.parent[key(layer_id, "weight")], in_ch))


def _deeper_conv(ctx: _Ctx) -> None:
    conv, bn, _ = ctx.spec["new_ids"]
    weight = ctx.like(conv, "weight")
    centre = ctx.spec["kernel_size"] // 2
    for c in range(weight.shape[0]):
        weight[c, c, centre, centre] = 1.0
    ctx.set(conv, "weight", weight)
    ctx.set(conv, "bias", ctx.like(conv, "bias"))
    ctx.identity_batchnorm(bn)


def _deeper_dense(ctx: _Ctx) -> None:
    dense = ctx.spec["new_ids"][0]
    n = ctx.out[key(dense, "weight")].shape[0]
    ctx.set(dense, "weight", torch.eye(n, dtype=ctx.out[key(dense, "weight")].dtype))
    ctx.set(dense, "bias", ctx.like(dense, "bias"))


def _resized(ctx: _Ctx) -> None:
    """Wider (replicate ``sources``) and narrow (keep the first ``width``) share one rule."""
    layer, old, width = ctx.spec["layer"], ctx.spec["old_width"], ctx.spec["width"]
    index = tuple(range(min(old, width))) + tuple(ctx.spec.get("sources", ()))
    for name in ("weight", "bias"):
        ctx.set(layer, name, gather(ctx.parent[key(layer, name)], index, 0))
    _apply_flow(ctx, layer, Channels(index, old))


def _skip_add(ctx: _Ctx) -> None:
    conv = ctx.spec["new_ids"][0]
    ctx.set(conv, "weight", ctx.like(conv, "weight"))
    ctx.set(conv, "bias", ctx.like(conv, "bias"))


def _skip_concat(ctx: _Ctx) -> None:
    shapes = ctx.child.shapes()
    n_main, n_new = shapes[ctx.spec["to"]][0], shapes[ctx.spec["from"]][0]
    _apply_flow(ctx, ctx.spec["new_ids"][0], Channels(tuple(range(n_main)) + (-1,) * n_new, n_main))


def _shrink_remove(ctx: _Ctx) -> None:
    """Removed layers simply lose their tensors; a removed concat also drops its extra channels
    from the readers' input weights (the main input comes first, so its slice is the leading one)."""
    kept, old = ctx.spec["kept_input"], ctx.spec["old_channels"]
    n = ctx.child.shapes()[kept][0]
    if n != old:
        index = tuple(i if i < old else -1 for i in range(n))
        _apply_flow(ctx, kept, Channels(index, old), set(ctx.spec["consumers"]))


def _unchanged(ctx: _Ctx) -> None:
    """A training setting changed (learning rate, weight decay, dropout): every tensor is the parent's."""


# The weight rule of each operation of ``automl.arch.morph.MORPHS``, by the same name.
RULES = {"deeper_conv": _deeper_conv, "deeper_dense": _deeper_dense, "wider_conv": _resized,
         "wider_dense": _resized, "skip_add": _skip_add, "skip_concat": _skip_concat,
         "shrink_remove": _shrink_remove, "shrink_narrow": _resized, "learning_rate": _unchanged,
         "weight_decay": _unchanged, "dropout": _unchanged}
if set(RULES) != set(MORPHS):  # a morph without a weight rule would train its child from random weights
    raise ImportError(f"weight rules and morphs disagree: {sorted(set(RULES) ^ set(MORPHS))}")
