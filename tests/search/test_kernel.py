"""Edit distance and kernel: metric-like properties, and a kernel matrix that is always PSD."""

import itertools
import random

import numpy as np
import pytest

from automl.arch.graph import Graph, Layer, initial_graph
from automl.arch.morph import apply_morph
from automl.search.kernel import (
    TUNING_WEIGHT,
    DistanceCache,
    describe,
    edit_distance,
    layers_distance,
    layers_distances,
    rbf_on_embeddings,
    skips_distance,
)


def variants() -> list[Graph]:
    """Architectures differing in depth, width and skip connections."""
    out = [initial_graph((1, 16, 16), 4, width=w, n_blocks=b) for w in (16, 32, 64) for b in (1, 2, 3)]
    g = initial_graph((1, 16, 16), 4)
    layers = list(g.layers)
    layers[7:7] = [Layer(100, "add", (7, 4))]
    layers[8] = Layer(layers[8].id, layers[8].type, (100,), layers[8].params)
    out.append(Graph(g.input_shape, 4, layers))
    layers = list(g.layers)
    layers[7:7] = [Layer(101, "concat", (7, 4))]
    layers[8] = Layer(layers[8].id, layers[8].type, (101,), layers[8].params)
    out.append(Graph(g.input_shape, 4, layers))
    return out


def test_descriptor_sees_weighted_layers_and_skips():
    d = describe(variants()[-2])
    assert [k[0] for k in d.layers] == ["conv", "conv", "conv", "dense", "dense"]
    assert d.layers[0] == ("conv", 64, 3, 1) and d.skips == ((1, 2, "add"),)


def test_each_step_of_a_training_setting_adds_the_tuning_weight():
    g = initial_graph((1, 28, 28), 10)
    lr = apply_morph(g, {"op": "learning_rate", "step": -1})
    both = apply_morph(apply_morph(lr, {"op": "learning_rate", "step": -2}),
                       {"op": "dropout", "layer": 14, "rate": 0.375})
    assert describe(lr) != describe(g), "a child differing only in its settings is not a duplicate"
    assert edit_distance(describe(g), describe(lr)) == pytest.approx(TUNING_WEIGHT)
    assert edit_distance(describe(g), describe(both)) == pytest.approx(3 * TUNING_WEIGHT)


def test_distance_is_zero_on_itself_symmetric_and_positive_elsewhere():
    descs = [describe(g) for g in variants()]
    for a, b in itertools.product(descs, repeat=2):
        d = edit_distance(a, b)
        assert d == pytest.approx(edit_distance(b, a))
        assert (d == 0) == (a == b) and d >= 0


def test_layer_edit_distance_counts_edits_and_relative_width():
    conv = lambda w: ("conv", w, 3, 1)  # noqa: E731
    assert layers_distance((conv(64),), (conv(64), conv(64))) == 1  # one insertion
    assert layers_distance((conv(32),), (conv(64),)) == pytest.approx(0.5 / 3)
    assert layers_distance((conv(32),), (("dense", 32, 1, 1),)) == 1
    assert skips_distance(((1, 2, "add"),), ()) == 1 and skips_distance(((1, 2, "add"),), ((1, 2, "concat"),)) == 1


def naive_edit_distance(a, b) -> float:
    """The textbook full-table dynamic program, as a reference for the vectorized one."""
    def sub(x, y):
        if x[0] != y[0]:
            return 1.0
        return sum(abs(p - q) / max(p, q, 1) for p, q in zip(x[1:], y[1:])) / 3
    table = [[float(i + j) if i == 0 or j == 0 else 0.0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + sub(a[i - 1], b[j - 1]))
    return table[-1][-1]


def test_vectorized_edit_distance_matches_the_textbook_program_on_random_sequences():
    rng = random.Random(1)
    def sequence():
        return tuple((rng.choice(["conv", "dense"]), rng.choice([8, 16, 64]), rng.choice([1, 3, 5]), rng.choice([1, 2]))
                     for _ in range(rng.randint(0, 7)))
    a, b = [sequence() for _ in range(40)], [sequence() for _ in range(30)]
    np.testing.assert_allclose(layers_distances(a, b), [[naive_edit_distance(x, y) for y in b] for x in a])


def test_cache_grows_incrementally_and_matches_direct_distances():
    descs = [describe(g) for g in variants()]
    cache = DistanceCache()
    for d in descs:
        cache.add(d)
    direct = np.array([[edit_distance(a, b) for b in descs] for a in descs])
    np.testing.assert_allclose(cache.matrix(), direct)
    np.testing.assert_allclose(cache.to(descs[:2]), direct[:2])


@pytest.mark.parametrize("length_scale", [0.1, 0.5, 2.0])
def test_kernel_matrix_is_positive_semidefinite_including_query_points(length_scale):
    rng = random.Random(0)
    descs = [describe(g) for g in variants()]
    cache = DistanceCache()
    for d in descs[:8]:
        cache.add(d)
    rows = cache.to(rng.sample(descs, len(descs)))  # training and query points embedded by one map
    K = rbf_on_embeddings(rows, rows, length_scale)
    assert np.allclose(K, K.T) and np.allclose(np.diag(K), 1)
    assert np.linalg.eigvalsh(K).min() > -1e-9
