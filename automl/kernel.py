"""Edit distance between architectures, and a kernel on it that is positive semi-definite by construction.

Shapes (n observed architectures, m query architectures):
    Descriptor.layers       list of (type, width, kernel, stride) for conv/dense layers in order
    Descriptor.skips        list of (from position, to position, kind) for add/concat merges
    DistanceCache.matrix()  (n, n) pairwise edit distances of the observed architectures
    embed(D)                (n_or_m, n) rows: distances to the n observed (landmark) architectures
    rbf_on_embeddings       (m, n) kernel values

The edit distance is Auto-Keras's: an edit distance over the sequences of weighted layers (insert or
delete 1; substitute: 1 for a type mismatch, else the mean relative difference of width, kernel size and
stride) plus ``lam`` times a skip-connection distance under an optimal (Hungarian) matching.
An RBF of an edit distance is not positive definite in general, so the GP would be ill-posed. Instead of
Auto-Keras's Bourgain embedding (which it applied to training points only), every architecture is
embedded by its vector of distances to the observed ones, and the RBF acts on Euclidean distances
between embeddings: positive semi-definite for any set of points, and the same map for training and
query points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from automl.graph import Graph

LayerKey = tuple[str, int, int, int]
SkipKey = tuple[int, int, str]


@dataclass(frozen=True)
class Descriptor:
    """What the distance looks at: weighted layers in order and skip connections by position."""

    layers: tuple[LayerKey, ...]
    skips: tuple[SkipKey, ...]


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
    return Descriptor(tuple(layers), tuple(skips))


def _relative(a: int, b: int) -> float:
    return abs(a - b) / max(a, b, 1)


def layer_distance(a: LayerKey, b: LayerKey) -> float:
    if a[0] != b[0]:
        return 1.0
    return (_relative(a[1], b[1]) + _relative(a[2], b[2]) + _relative(a[3], b[3])) / 3.0


def layers_distance(a: tuple[LayerKey, ...], b: tuple[LayerKey, ...]) -> float:
    """Edit distance between two layer sequences (dynamic programming, O(len(a) * len(b)))."""
    previous = [float(j) for j in range(len(b) + 1)]  # one row of the table at a time, plain floats
    for i, layer_a in enumerate(a, start=1):
        row = [float(i)]
        for j, layer_b in enumerate(b, start=1):
            row.append(min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + layer_distance(layer_a, layer_b)))
        previous = row
    return previous[-1]


def skip_distance(a: SkipKey, b: SkipKey) -> float:
    if a[2] != b[2]:
        return 1.0
    len_a, len_b = abs(a[1] - a[0]), abs(b[1] - b[0])
    return (abs(a[0] - b[0]) + abs(len_a - len_b)) / max(max(a[0], b[0]) + max(len_a, len_b), 1)


def skips_distance(a: tuple[SkipKey, ...], b: tuple[SkipKey, ...]) -> float:
    """Optimal matching of skip connections (Hungarian); each unmatched one costs 1."""
    if not a or not b:
        return float(len(a) + len(b))
    cost = np.array([[skip_distance(x, y) for y in b] for x in a])
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum()) + abs(len(a) - len(b))


def edit_distance(a: Descriptor, b: Descriptor, lam: float = 1.0) -> float:
    return layers_distance(a.layers, b.layers) + lam * skips_distance(a.skips, b.skips)


class DistanceCache:
    """Pairwise distances of observed architectures, grown one row at a time (never recomputed)."""

    def __init__(self, lam: float = 1.0) -> None:
        self.lam = lam
        self.items: list[Descriptor] = []
        self._matrix = np.zeros((0, 0))
        self._memo: dict[tuple[Descriptor, Descriptor], float] = {}

    def distance(self, a: Descriptor, b: Descriptor) -> float:
        if a == b:
            return 0.0
        key = (a, b) if hash(a) <= hash(b) else (b, a)
        if key not in self._memo:
            self._memo[key] = edit_distance(a, b, self.lam)
        return self._memo[key]

    def add(self, item: Descriptor) -> None:
        row = np.array([self.distance(item, other) for other in self.items])
        n = len(self.items)
        grown = np.zeros((n + 1, n + 1))
        grown[:n, :n] = self._matrix
        grown[n, :n] = grown[:n, n] = row
        self._matrix = grown
        self.items.append(item)

    def matrix(self) -> np.ndarray:
        return self._matrix

    def to(self, queries: list[Descriptor]) -> np.ndarray:
        """(m, n) distances from each query to each observed architecture."""
        return np.array([[self.distance(q, o) for o in self.items] for q in queries]).reshape(len(queries), -1)


def rbf_on_embeddings(rows_a: np.ndarray, rows_b: np.ndarray, length_scale: float) -> np.ndarray:
    """exp(-|e_a - e_b|^2 / (n * l^2)) for embeddings e (distance rows); (len(a), len(b))."""
    n = max(rows_a.shape[1], 1)
    sq = (rows_a ** 2).sum(1)[:, None] + (rows_b ** 2).sum(1)[None, :] - 2 * rows_a @ rows_b.T
    return np.exp(-np.maximum(sq, 0.0) / (n * length_scale ** 2))
