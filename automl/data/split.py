"""The stratified, seeded split shared by the pipeline, the Python API and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from automl.errors import DataError


def stratified_split(
    labels: Sequence[str], fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split indices into ``len(fractions) + 1`` parts (the last takes the rest), per class, seeded.

    Every class keeps at least one example in the last (training) part, and a class with enough
    examples appears in every part, so accuracy on each part means the same thing.
    """
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"need at least 2 classes to classify; found {len(classes)} ({list(classes)}).")
    need = 1 + sum(1 for f in fractions if f > 0)
    small = [f"{str(c)!r} ({n})" for c, n in zip(classes, counts) if n < need]
    if small:
        raise DataError(
            f"the stratified split needs at least {need} images per class (one per split); "
            f"too few for: {', '.join(small)}. Add images or remove these classes."
        )
    for cls in classes:
        idx = rng.permutation(np.flatnonzero(y == cls))
        start = 0
        for part, frac in zip(parts, fractions):
            take = max(1, int(round(frac * len(idx)))) if frac > 0 else 0
            take = min(take, len(idx) - start - 1)
            part.extend(idx[start : start + take].tolist())
            start += take
        parts[-1].extend(idx[start:].tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
