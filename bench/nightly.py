"""Nightly runs that build on each other: a chain of warm-started searches against cold starts, each
day on more of the data, at the same small daily budget.

    python -m bench.nightly [--dataset dsprites] [--budget 60] [--seeds 3] [--days 0.6,0.8,1.0]

Day ``d`` sees the first ``days[d]`` of a fixed shuffled training split (new images arrive, none
leave); the test split (20 %, stratified) is the same every day. Each day, per seed:
``ImageClassifier.fit`` within 75 % of the budget and ``final_fit`` within the rest (the protocol of
``bench.search_strategies``), then test accuracy. **cold**: every day starts from the seed network.
**warm**: day 1 is the cold run; each later day is ``ImageClassifier(warm_start=<yesterday's path>)``.
Every run is saved as it finishes to ``bench/results/nightly.json``; the table (mean +- std per day
and chain) goes to ``latest.json`` (``nightly``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from automl import ImageClassifier
from automl.config import Params
from automl.search.store import CandidateStore
from bench.common import RESULTS, load_dataset
from bench.search_strategies import FINAL_SHARE, IMAGE_SIZE, split

RESULTS_FILE = RESULTS / "nightly.json"


def day_rows(train: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """The training rows of each day: growing prefixes of one shuffled order."""
    order = np.random.default_rng(1000 + seed).permutation(train)
    return [order[: int(round(f * len(order)))] for f in fractions]


def run_day(x: np.ndarray, y: np.ndarray, rows: np.ndarray, test: np.ndarray, params: Params, budget: float,
            path: Path, warm_from: Path | None) -> dict:
    """One day's search and final fit in ``path``; its test accuracy and what the search did."""
    clf = ImageClassifier(path=path, params=params, warm_start=warm_from, overwrite=True)
    start = time.time()
    clf.fit(x[rows], y[rows], time_limit=budget * (1 - FINAL_SHARE))
    searched = time.time()
    clf.final_fit(x[rows], y[rows])
    final = time.time()
    records = CandidateStore(path).records()
    return {"test_accuracy": clf.evaluate(x[test], y[test]), "seconds": round(time.time() - start, 1),
            "search_seconds": round(searched - start, 1), "final_fit_seconds": round(final - searched, 1),
            "n_candidates": len(records), "roots": sum(r.origin is not None for r in records),
            "best_val_accuracy": max((r.val_accuracy or 0.0) for r in records)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="dsprites")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per day: search + final fit")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", default="0.6,0.8,1.0", help="fraction of the training split each day sees")
    args = parser.parse_args(argv)
    fractions = [float(f) for f in args.days.split(",")]
    x, y = load_dataset(args.dataset)
    train, test = split(y)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="automl-nightly-") as tmp:
        for seed in range(args.seeds):
            params = Params().replace(**{"preprocess.image_size": IMAGE_SIZE[args.dataset], "seed": seed,
                                         "final_fit.time_limit": args.budget * FINAL_SHARE})
            for chain in ("cold", "warm"):
                for day, images in enumerate(day_rows(train, fractions, seed), start=1):
                    if chain == "warm" and day == 1:  # the chain's first day is the cold run: same data, same seed
                        continue
                    yesterday = Path(tmp, f"{seed}-{'cold' if day == 2 else 'warm'}-{day - 1}")
                    row = {"dataset": args.dataset, "budget": args.budget, "seed": seed, "chain": chain, "day": day,
                           "fraction": fractions[day - 1],
                           **run_day(x, y, images, test, params, args.budget, Path(tmp, f"{seed}-{chain}-{day}"),
                                     yesterday if chain == "warm" else None)}
                    rows.append(row)
                    RESULTS_FILE.write_text(json.dumps({"runs": rows}, indent=1))
                    print(f"seed {seed} {chain} day {day} ({len(images)} images): test {row['test_accuracy']:.4f} "
                          f"({row['n_candidates']} candidates, {row['roots']} warm roots, {row['seconds']:.0f}s)",
                          flush=True)
    return report(rows, args.dataset, args.budget, len(fractions))


def report(rows: list[dict], dataset: str, budget: float, days: int, latest: Path = RESULTS / "latest.json") -> dict:
    """Mean +- std of test accuracy per day and chain (warm day 1 is cold day 1), printed and kept in
    ``latest``."""
    table: dict = {}
    for day in range(1, days + 1):
        for chain in ("cold", "warm"):
            source = "cold" if day == 1 else chain
            accs = [r["test_accuracy"] for r in rows if r["dataset"] == dataset and r["budget"] == budget
                    and r["day"] == day and r["chain"] == source]
            if accs:
                table.setdefault(f"day {day}", {})[chain] = {
                    "mean": round(statistics.mean(accs), 4),
                    "std": round(statistics.pstdev(accs), 4) if len(accs) > 1 else 0.0, "seeds": len(accs)}
    for day, cells in table.items():
        print(f"{dataset} {budget:.0f}s {day}: " + "  ".join(f"{c} {v['mean']:.4f} +- {v['std']:.4f} ({v['seeds']})"
                                                        for c, v in cells.items()))
    out = json.loads(latest.read_text()) if latest.exists() else {}
    out["nightly"] = {"dataset": dataset, "budget_seconds": budget, "table": table, "date": time.strftime("%Y-%m-%d")}
    latest.write_text(json.dumps(out, indent=1))
    return table


if __name__ == "__main__":
    main()
