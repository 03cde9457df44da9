"""A Gaussian process over architecture embeddings (see ``automl.search.kernel``), in numpy.

Shapes (n observations, m queries):
    E       (n, n)  embeddings of the observed architectures (distance rows)
    y       (n,)    their validation accuracies
    Eq      (m, n)  embeddings of query architectures
    mean    (m,)    posterior mean, in the units of y
    std     (m,)    posterior standard deviation, in the units of y

Hyper-parameters (length scale, noise) are picked from a small grid by log marginal likelihood at every
fit: with at most a few hundred observations a fit costs milliseconds, and a grid cannot diverge.
Targets are standardized so one grid suits any accuracy range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from automl.search.kernel import rbf_on_embeddings

LENGTH_SCALES = (0.1, 0.2, 0.4, 0.8, 1.6)
NOISES = (1e-4, 1e-2, 1e-1)


@dataclass
class Posterior:
    mean: np.ndarray
    std: np.ndarray


class GaussianProcess:
    """Exact GP regression; ``fit`` then ``predict``."""

    def __init__(self) -> None:
        self.length_scale = LENGTH_SCALES[2]
        self.noise = NOISES[1]
        self._E: np.ndarray | None = None

    def fit(self, E: np.ndarray, y: np.ndarray, noises: tuple[float, ...] = NOISES) -> "GaussianProcess":
        """``noises``: the grid of noise variances (in standardized units) to pick from; one value fixes
        it, where the noise is known (an accuracy's sampling variance on a validation split)."""
        y = np.asarray(y, dtype=float)
        self._y_mean = float(y.mean())
        self._y_std = float(y.std()) or 1.0
        target = (y - self._y_mean) / self._y_std
        best = None
        for ls in LENGTH_SCALES:
            K = rbf_on_embeddings(E, E, ls)
            for noise in noises:
                fitted = _factor(K, noise, target)
                if fitted and (best is None or fitted[0] > best[0]):
                    best = (fitted[0], ls, noise, fitted[1], fitted[2])
        if best is None:
            raise np.linalg.LinAlgError("kernel matrix not positive definite at any noise level")
        _, self.length_scale, self.noise, self._chol, self._alpha = best
        self._E = E
        return self

    def predict(self, Eq: np.ndarray) -> Posterior:
        if self._E is None:
            raise RuntimeError("fit the GP first")
        k = rbf_on_embeddings(Eq, self._E, self.length_scale)  # (m, n)
        mean = k @ self._alpha
        v = cho_solve(self._chol, k.T)  # (n, m)
        var = np.clip(1.0 - np.einsum("mn,nm->m", k, v), 1e-12, None)
        return Posterior(mean * self._y_std + self._y_mean, np.sqrt(var) * self._y_std)


def _factor(K: np.ndarray, noise: float, target: np.ndarray):
    """(log marginal likelihood, Cholesky factor, alpha) or None when K + noise*I is not PD."""
    try:
        chol = cho_factor(K + noise * np.eye(len(K)), lower=True)
    except np.linalg.LinAlgError:
        return None
    alpha = cho_solve(chol, target)
    log_det = 2.0 * np.log(np.diag(chol[0])).sum()
    lml = -0.5 * target @ alpha - 0.5 * log_det - 0.5 * len(K) * np.log(2 * np.pi)
    return lml, chol, alpha


def ucb(posterior: Posterior, beta: float) -> np.ndarray:
    """Upper confidence bound: mean + beta * std."""
    return posterior.mean + beta * posterior.std
