"""Warm starts: a search that begins from an earlier search's best networks instead of the seed's.

Why: a scheduled run (every night on the data as it stands) would otherwise spend each budget
re-discovering yesterday's architectures. A trained candidate is a valid starting point for morphs on
any data with the same input: its weights are scored on the new validation split (a forward pass),
those scores seed the searcher's model, and morphs grow from them (``Searcher(roots=...)``).
What may change between runs: the images (the usual case); the classes (the body is kept and the
classification head re-initialised, and such a root trains instead of being scored); the input size
or channels (refused, or the search starts from the seed network: ``search.warm_start_mismatch``).
This module reads earlier searches from folders; the pipeline's MLflow forms (run ids, registered
models) are resolved into the same ``Root`` records at its edge (``tasks.warm``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automl.arch.builder import build_module
from automl.arch.graph import Graph, with_classes
from automl.errors import ConfigError
from automl.search.records import Origin
from automl.search.store import CandidateStore


@dataclass(frozen=True)
class Root:
    """A network an earlier search trained, with the class labels its outputs stand for."""

    graph: Graph
    weights: dict[str, torch.Tensor]
    origin: Origin
    classes: list[Any]
    val_accuracy: float  # in the earlier search, on its own validation split


def store_root(folder: str | Path) -> Path | None:
    """The search store in ``folder``: the folder itself (an ``ImageClassifier`` path or a store), or
    its ``search/`` (a pipeline's ``paths.work``); None when it holds neither."""
    for root in (Path(folder), Path(folder, "search")):
        if (root / "candidates").is_dir():
            return root
    return None


def roots_from_folder(folder: str | Path, top: int, source: str | None = None) -> list[Root]:
    """The ``top`` best candidates of the search in ``folder`` (see ``store_root``), best first;
    ``source`` names it in their origin (default: the folder)."""
    root = store_root(folder)
    if root is None:
        raise ConfigError(f"search.warm_start={folder}: no search there (no candidates/, nor search/candidates/)")
    store = CandidateStore(root)
    classes = store.classes()
    if classes is None:
        raise ConfigError(f"search.warm_start={source or folder}: the search there does not say its classes "
                          "(classes.json; made by an older automl): run it again, or start without a warm start")
    ranked = store.ranked()[:top]
    if not ranked:
        raise ConfigError(f"search.warm_start={source or folder}: no candidate trained there to start from")
    return [Root(store.graph(r.id), store.weights(r.id), Origin(source or str(folder), r.id, i), classes,
                 float(r.val_accuracy or 0.0)) for i, r in enumerate(ranked)]


def fitted_roots(roots: Sequence[Root], input_shape: tuple[int, ...], classes: Sequence[Any], on_mismatch: str,
                 seed: int) -> tuple[list[Root], list[str]]:
    """``roots`` made to fit this data, and what was done, for the search log: a root whose classes
    differ keeps its body with a new head (``Origin.head_reset``); input shapes that differ are refused
    (``on_mismatch`` "refuse") or drop every root, so the search starts from the seed ("seed")."""
    if not roots:
        return [], []
    shapes = {r.graph.input_shape for r in roots}
    if shapes != {tuple(input_shape)}:
        what = (f"search.warm_start={roots[0].origin.source}: its networks take inputs of "
                f"{' / '.join('x'.join(map(str, s)) for s in sorted(shapes))}, this data "
                f"{'x'.join(map(str, input_shape))} (channels x size x size: preprocess.image_size or the images' "
                "channels changed)")
        if on_mismatch == "refuse":
            raise ConfigError(f"{what}; set search.warm_start_mismatch=seed to start from the seed network "
                              "instead, or search.warm_start= to start cold")
        return [], [f"{what}: starting from the seed network (search.warm_start_mismatch=seed)"]
    fitted, notes = [], []
    for r in roots:
        if list(r.classes) == list(classes):
            fitted.append(r)
            continue
        graph, weights = new_head(r.graph, r.weights, len(classes), seed + r.origin.root)
        fitted.append(dataclasses.replace(r, graph=graph, weights=weights, classes=list(classes),
                                          origin=dataclasses.replace(r.origin, head_reset=True)))
        notes.append(f"root {r.origin.root} (candidate #{r.origin.candidate} of {r.origin.source}): the classes "
                     f"changed ({_change(r.classes, classes)}): kept its body, re-initialised its classification "
                     "head; it trains instead of being only scored")
    return fitted, notes


def new_head(graph: Graph, weights: dict[str, torch.Tensor], n_classes: int,
             seed: int) -> tuple[Graph, dict[str, torch.Tensor]]:
    """``graph`` for ``n_classes`` with every weight but its classification head's (freshly initialised)."""
    headed = with_classes(graph, n_classes)
    head = f"ops.L{headed.layers[-1].inputs[0]}."
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fresh = build_module(headed).state_dict()
    return headed, {k: (v if k.startswith(head) else weights[k]) for k, v in fresh.items()}


def _change(before: Sequence[Any], now: Sequence[Any]) -> str:
    added = [c for c in now if c not in before]
    removed = [c for c in before if c not in now]
    parts = ([f"new: {', '.join(map(str, added))}"] if added else []) + \
        ([f"gone: {', '.join(map(str, removed))}"] if removed else [])
    return "; ".join(parts) or "the same labels in another order"
