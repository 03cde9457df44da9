"""Edit distance between architectures, and a kernel on it that is positive semi-definite by construction.

Shapes (n observed architectures, m query architectures):
    Descriptor.layers       list of (type, width, kernel, stride) for conv/dense layers in order
    Descriptor.skips        list of (from position, to position, kind) for add/concat merges
    Descriptor.tuning       learning-rate and weight-decay steps, dropout in its steps (``Graph.tuning``)
    layers_distances(a, b)  (len(a), len(b)) layer edit distances, one DP vectorized over all pairs
    DistanceCache.matrix()  (n, n) pairwise edit distances of the observed architectures
    embed(D)                (n_or_m, n) rows: distances to the n observed (landmark) architectures
    rbf_on_embeddings       (m, n) kernel values

The edit distance is Auto-Keras's: an edit distance over the sequences of weighted layers (insert or
delete 1; substitute: 1 for a type mismatch, else the mean relative difference of width, kernel size and
stride) plus ``lam`` times a skip-connection distance under an optimal (Hungarian) matching, plus
``TUNING_WEIGHT`` per step of the training settings between them (ours: Auto-Keras searched no settings).
An RBF of an edit distance is not positive definite in general, so the GP would be ill-posed. Instead of
Auto-Keras's Bourgain embedding (which it applied to training points only), every architecture is
embedded by its vector of distances to the observed ones, and the RBF acts on Euclidean distances
between embeddings: positive semi-definite for any set of points, and the same map for training and
query points.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from automl.arch.graph import Graph
from automl.arch.morph import DROPOUT_STEP, TUNING_STEPS

LayerKey = tuple[str, int, int, int]
SkipKey = tuple[int, int, str]
TUNING_WEIGHT = 0.25  # a step of a training setting: a quarter of inserting a layer, 1.5x halving one's width


@dataclass(frozen=True)
class Descriptor:
    """What the distance looks at: weighted layers in order, skip connections by position, and the
    steps of the training settings."""

    layers: tuple[LayerKey, ...]
    skips: tuple[SkipKey, ...]
    tuning: tuple[float, ...] = ()


def describe(graph: Graph) -> Descriptor:
    position: dict[int, int] = {0: 0}  # layer id -> number of weighted layers up to and including it
    layers: list[LayerKey] = []
    skips: list[SkipKey] = []
    for layer in graph.layers:
        pos = max(position[i] for i in layer.inputs)
        if layer.type in ("conv", "dense"):
            p = layer.params
            width = p.get("filters", p.get("units", 0))
            layers.append((layer.type, int(width), int(p.get("kernel_size", 1)), int(p.get("stride", 1))))
            pos = len(layers)
        elif layer.type in ("add", "concat"):
            ends = sorted(position[i] for i in layer.inputs)
            skips.append((ends[0], ends[-1], layer.type))
        position[layer.id] = pos
    dropout = sum(layer.params["rate"] for layer in graph.layers if layer.type == "dropout") / DROPOUT_STEP
    return Descriptor(tuple(layers), tuple(skips), tuple(float(graph.step(n)) for n in TUNING_STEPS) + (dropout,))


_TYPES = {"conv": 0.0, "dense": 1.0}


def _encode(sequences: list[tuple[LayerKey, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """(len(sequences), longest, 4) array of (type code, width, kernel, stride), padded with ones,
    and the lengths (len(sequences),)."""
    lengths = np.array([len(s) for s in sequences], dtype=int)
    out = np.ones((len(sequences), int(lengths.max(initial=0)), 4))
    for k, seq in enumerate(sequences):
        if seq:
            out[k, : len(seq)] = [(_TYPES.get(t, 2.0), w, ks, st) for t, w, ks, st in seq]
    return out, lengths


Encoded = tuple[np.ndarray, np.ndarray]


def layers_distances(a: list[tuple[LayerKey, ...]], b: list[tuple[LayerKey, ...]]) -> np.ndarray:
    """(len(a), len(b)) edit distances between layer sequences (see ``_encoded_distances``)."""
    return _encoded_distances(_encode(a), _encode(b))


def _encoded_distances(a: Encoded, b: Encoded) -> np.ndarray:
    """(len(a), len(b)) edit distances between layer sequences: one dynamic program vectorized over
    all pairs.

    Insert or delete costs 1; substitution costs 1 for a type mismatch, else the mean relative
    difference of width, kernel size and stride. A row of the table follows from the previous one in
    closed form: row[j] = j + min over k <= j of (v[k] - k), a running minimum (``np.minimum.accumulate``),
    so the only Python loop is over the layers of the longest sequence in ``a``; the loop carries
    ``row - j`` itself, which saves the subtraction and addition a step. Both sides come encoded
    (``_encode``), so the observed architectures are encoded once, not per query.
    """
    (ta, la), (tb, lb) = a, b
    p, m, n = len(ta) * len(tb), ta.shape[1], tb.shape[1]
    len_a, len_b = np.repeat(la, len(tb)), np.tile(lb, len(ta))  # pair k = (k // len(tb), k % len(tb))
    cost = _substitutions(ta, tb).reshape(m, p, n) - 1.0  # substitution cost minus the step it moves
    shifted = np.zeros((p, n + 1))  # row - j: the empty prefix of the first sequence
    out = len_b.astype(float)  # pairs whose first sequence is empty
    step = np.empty((p, n + 1))
    for i in range(1, m + 1):
        step[:, 0] = i
        np.minimum(shifted[:, 1:] + 1.0, shifted[:, :-1] + cost[i - 1], out=step[:, 1:])
        shifted = np.minimum.accumulate(step, axis=1)
        done = np.flatnonzero(len_a == i)
        out[done] = shifted[done, len_b[done]] + len_b[done]
    return out.reshape(len(ta), len(tb))


def _substitutions(ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """(m, len(ta), len(tb), n) substitution costs between every layer of every sequence of each side.
    A search's architectures share a few dozen distinct layers, so the costs are computed once per
    pair of distinct layers and gathered: far less work than per pair of sequences and positions."""
    layers = np.concatenate([ta.reshape(-1, 4), tb.reshape(-1, 4)])
    # one exact number per layer (type < 4, width < 2**30, kernel and stride < 2**8): a 1-d unique is cheap
    _, first, index = np.unique(layers @ [2.0**46, 2.0**16, 2.0**8, 1.0], return_index=True, return_inverse=True)
    keys, index = layers[first], index.reshape(-1)
    ia, ib = index[: ta.shape[0] * ta.shape[1]].reshape(ta.shape[:2]), index[ta.shape[0] * ta.shape[1] :]
    ka, kb = keys[:, None, :], keys[None, :, :]
    relative = np.abs(ka[..., 1:] - kb[..., 1:]) / np.maximum(np.maximum(ka[..., 1:], kb[..., 1:]), 1.0)
    table = np.where(ka[..., 0] != kb[..., 0], 1.0, relative.mean(-1))  # (distinct, distinct)
    return table[ia.T[:, :, None, None], ib.reshape(tb.shape[:2])[None, None, :, :]]


def layers_distance(a: tuple[LayerKey, ...], b: tuple[LayerKey, ...]) -> float:
    return float(layers_distances([a], [b])[0, 0])


def skip_distance(a: SkipKey, b: SkipKey) -> float:
    if a[2] != b[2]:
        return 1.0
    len_a, len_b = abs(a[1] - a[0]), abs(b[1] - b[0])
    return (abs(a[0] - b[0]) + abs(len_a - len_b)) / max(max(a[0], b[0]) + max(len_a, len_b), 1)


@functools.lru_cache(maxsize=65536)  # a morph changes layers more often than skips: pairs repeat
def skips_distance(a: tuple[SkipKey, ...], b: tuple[SkipKey, ...]) -> float:
    """Optimal matching of skip connections (Hungarian); each unmatched one costs 1."""
    if not a or not b:
        return float(len(a) + len(b))
    cost = np.array([[skip_distance(x, y) for y in b] for x in a])
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum()) + abs(len(a) - len(b))


def edit_distances(queries: list[Descriptor], items: list[Descriptor], lam: float = 1.0,
                   encoded: Encoded | None = None) -> np.ndarray:
    """(len(queries), len(items)) edit distances, all pairs in one vectorized program; ``encoded``:
    the items' layers already through ``_encode``."""
    if not queries or not items:
        return np.zeros((len(queries), len(items)))
    layers = _encoded_distances(_encode([q.layers for q in queries]), encoded or _encode([o.layers for o in items]))
    skips = np.array([[skips_distance(q.skips, o.skips) for o in items] for q in queries])
    return layers + lam * skips + TUNING_WEIGHT * _tuning_distances(queries, items)


def _tuning_distances(queries: list[Descriptor], items: list[Descriptor]) -> np.ndarray:
    """(len(queries), len(items)) steps between the training settings (L1; a missing one counts as 0)."""
    width = max(len(d.tuning) for d in queries + items)
    q, i = (np.array([d.tuning + (0.0,) * (width - len(d.tuning)) for d in ds]).reshape(len(ds), width)
            for ds in (queries, items))
    return np.abs(q[:, None, :] - i[None, :, :]).sum(-1)


def edit_distance(a: Descriptor, b: Descriptor, lam: float = 1.0) -> float:
    return float(edit_distances([a], [b], lam)[0, 0])


class DistanceCache:
    """Pairwise distances of observed architectures, grown one row at a time (never recomputed)."""

    def __init__(self, lam: float = 1.0) -> None:
        self.lam = lam
        self.items: list[Descriptor] = []
        self._matrix = np.zeros((0, 0))
        self._encoded: Encoded | None = None

    def add(self, item: Descriptor) -> None:
        n = len(self.items)
        grown = np.zeros((n + 1, n + 1))
        grown[:n, :n] = self._matrix
        grown[n, :n] = grown[:n, n] = self.to([item])[0]
        self._matrix = grown
        self.items.append(item)
        self._encoded = None

    def matrix(self) -> np.ndarray:
        return self._matrix

    def to(self, queries: list[Descriptor]) -> np.ndarray:
        """(m, n) distances from each query to each observed architecture."""
        if self._encoded is None:
            self._encoded = _encode([o.layers for o in self.items])
        return edit_distances(queries, self.items, self.lam, self._encoded)

    def between(self, queries: list[Descriptor], others: list[Descriptor]) -> np.ndarray:
        return edit_distances(queries, others, self.lam)


def rbf_on_embeddings(rows_a: np.ndarray, rows_b: np.ndarray, length_scale: float) -> np.ndarray:
    """exp(-|e_a - e_b|^2 / (n * l^2)) for embeddings e (distance rows); (len(a), len(b))."""
    n = max(rows_a.shape[1], 1)
    sq = (rows_a ** 2).sum(1)[:, None] + (rows_b ** 2).sum(1)[None, :] - 2 * rows_a @ rows_b.T
    return np.exp(-np.maximum(sq, 0.0) / (n * length_scale ** 2))
