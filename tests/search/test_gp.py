"""The GP on architecture embeddings: it interpolates, knows where it is unsure, and recovers a known
function of the architecture."""

import numpy as np

from automl.arch.graph import initial_graph
from automl.search.gp import GaussianProcess, ucb
from automl.search.kernel import DistanceCache, describe


def embedded(graphs, train_count):
    cache = DistanceCache()
    descs = [describe(g) for g in graphs]
    for d in descs[:train_count]:
        cache.add(d)
    return cache.matrix(), cache.to(descs)


def test_gp_recovers_a_known_function_of_width():
    widths = [8, 12, 16, 24, 32, 48, 64, 96, 128]
    graphs = [initial_graph((1, 12, 12), 3, width=w) for w in widths]
    truth = np.log2(widths) / 7  # accuracy that grows with width
    train = [0, 2, 4, 6, 8]
    cache = DistanceCache()
    for i in train:
        cache.add(describe(graphs[i]))
    gp = GaussianProcess().fit(cache.matrix(), truth[train])
    post = gp.predict(cache.to([describe(g) for g in graphs]))
    np.testing.assert_allclose(post.mean[train], truth[train], atol=0.02)  # interpolates the data
    held_out = [1, 3, 5, 7]
    assert np.abs(post.mean[held_out] - truth[held_out]).max() < 0.1  # and what lies between
    assert np.corrcoef(post.mean, truth)[0, 1] > 0.95


def test_uncertainty_grows_away_from_the_data_and_ucb_uses_it():
    near = [initial_graph((1, 12, 12), 3, width=w) for w in (30, 32, 34)]
    far = initial_graph((1, 12, 12), 3, width=32, n_blocks=1)
    cache = DistanceCache()
    for g in near:
        cache.add(describe(g))
    gp = GaussianProcess().fit(cache.matrix(), np.array([0.5, 0.6, 0.55]))
    post = gp.predict(cache.to([describe(near[1]), describe(far)]))
    assert post.std[1] > post.std[0]
    np.testing.assert_allclose(ucb(post, 2.0), post.mean + 2.0 * post.std)
    assert post.mean[0] > post.mean[1]  # the known architecture looks better on the mean alone...
    assert np.argmax(ucb(post, 0.0)) == 0 and np.argmax(ucb(post, 10.0)) == 1  # ...exploration picks the far one
