"""The GPU path in under 5 minutes: trainer images/s against a bare loop on the device, then a 2-minute
search with a short final fit. On a machine without CUDA it runs the same on the CPU and says so.

    bench/gpu_check            # or: python -m bench.gpu_check [--search-seconds 120]

Writes ``bench/results/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from automl import ImageClassifier, Params
from automl.data.split import stratified_split
from bench import throughput
from bench.common import RESULTS, load_dataset


def search(seconds: float) -> dict:
    x, y = load_dataset("mnist5k")
    test, train = stratified_split(y, [0.2], seed=0)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        clf = ImageClassifier(path=tmp, params=Params().replace(**{"search.max_candidates": 1000}))
        clf.fit(x[train], y[train], time_limit=seconds)
        n_candidates = len(list((clf.path / "candidates").glob("*/record.json")))
        clf.final_fit(x[train], y[train], epochs=3)
        accuracy = clf.evaluate(x[test], y[test])
    return {"search_seconds": seconds, "n_candidates": n_candidates, "test_accuracy": round(accuracy, 4),
            "wall_seconds": round(time.time() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search-seconds", type=float, default=120.0)
    args = parser.parse_args()
    out = {"cuda": torch.cuda.is_available(), "throughput": throughput.measure(epochs=1, repeats=2)}
    tp = out["throughput"]
    print(f"device {tp['device']}: trainer {tp['trainer_images_per_s']:.0f} images/s, "
          f"bare loop {tp['bare_images_per_s']:.0f}, ratio {tp['trainer_throughput_ratio']}"
          f" (target >= {throughput.TARGET})", flush=True)
    out["search"] = search(args.search_seconds)
    print(f"search {args.search_seconds:.0f}s: {out['search']['n_candidates']} candidates, "
          f"test accuracy {out['search']['test_accuracy']} ({out['search']['wall_seconds']}s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu_check.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
