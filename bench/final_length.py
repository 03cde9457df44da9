"""How long should the final fit be? One search, then several final fits of its best candidate, each from
the same searched weights and within the same time limit, differing only in their epochs: a multiple
(``--factors``) of a candidate's sized epochs. Paired this way, the search's own spread (which best it
found) cancels out of the comparison, which a benchmark of whole runs cannot do with three seeds.

    python -m bench.final_length --budget 600 --datasets dsprites_fine,mnist5k --factors 2,1

The budget is split as in ``bench.search_strategies`` (the search gets 75 %, each final fit the rest as
its ``final_fit.time_limit``). Test accuracy is the final model's as a user gets it (test-time shifts
on). Rows are saved to ``bench/results/final_length.json`` as they finish; saved rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from automl import ImageClassifier, Params
from automl.search.store import CandidateStore
from bench.common import RESULTS, load_dataset
from bench.search_strategies import FINAL_SHARE, IMAGE_SIZE, split

RESULTS_FILE = RESULTS / "final_length.json"


def candidate_epochs(root: str) -> int:
    """The epochs a candidate of this search was sized to train: every candidate gets the same, but one
    the deadline cut trained fewer."""
    return max(r.epochs for r in CandidateStore(root).records())


def best_curve(root: str) -> dict:
    """The chosen candidate's validation curve: whether it was still improving when its epochs ended is
    what a final fit's length could be read from."""
    best = CandidateStore(root).best()
    return {"best_epoch": best.best_epoch, "best_epochs": best.epochs,
            "best_val_accuracy": [h["val_accuracy"] for h in best.history],
            "best_val_loss": [h["val_loss"] for h in best.history]}


def run_seed(dataset: str, seed: int, budget: float, factors: list[float]) -> list[dict]:
    """One search of ``budget * (1 - FINAL_SHARE)`` seconds, then one final fit per factor."""
    x, y = load_dataset(dataset)
    train, test = split(y)
    params = Params().replace(**{"preprocess.image_size": IMAGE_SIZE[dataset], "seed": seed})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clf = ImageClassifier(path=tmp, params=params)
        clf.fit(x[train], y[train], time_limit=budget * (1 - FINAL_SHARE))
        epochs, curve = candidate_epochs(tmp), best_curve(tmp)
        for factor in factors:
            start = time.time()
            final = clf.final_fit(x[train], y[train], epochs=max(1, round(factor * epochs)),
                                  time_limit=budget * FINAL_SHARE)
            rows.append({"dataset": dataset, "budget": budget, "seed": seed, "factor": factor,
                         "candidate_epochs": epochs, "epochs": final["epochs"], "stopped": final["stopped"],
                         "kept_searched": final["kept_searched"], "seconds": time.time() - start,
                         "test_accuracy": clf.evaluate(x[test], y[test]), **curve})
    return rows


def paired_summary(rows: list[dict], baseline: float) -> dict[str, dict[str, dict[str, float]]]:
    """Per dataset and factor: mean and standard deviation of test accuracy, and of its difference from
    ``baseline``'s on the same search (the pairs)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset]
        base = {r["seed"]: r["test_accuracy"] for r in mine if r["factor"] == baseline}
        for factor in sorted({r["factor"] for r in mine}, reverse=True):
            acc = {r["seed"]: r["test_accuracy"] for r in mine if r["factor"] == factor}
            diffs = [acc[s] - base[s] for s in acc if s in base]
            out.setdefault(dataset, {})[str(factor)] = {
                "mean": statistics.fmean(acc.values()), "std": statistics.pstdev(acc.values()),
                "diff_mean": statistics.fmean(diffs) if diffs else float("nan"),
                "diff_std": statistics.pstdev(diffs) if diffs else float("nan"), "n": len(acc)}
    return out


def load_rows() -> list[dict]:
    return json.loads(RESULTS_FILE.read_text())["runs"] if RESULTS_FILE.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--datasets", default="mnist5k,dsprites_fine")
    parser.add_argument("--factors", default="2,1",
                        help="final-fit epochs as multiples of a candidate's; the first is the baseline")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    rows = load_rows()
    for dataset in args.datasets.split(","):
        for seed in range(args.seeds):
            done = {r["factor"] for r in rows if (r["dataset"], r["budget"], r["seed"]) == (dataset, args.budget, seed)}
            if set(factors) <= done:
                continue
            new = [r for r in run_seed(dataset, seed, args.budget, factors) if r["factor"] not in done]
            rows += new
            RESULTS.mkdir(exist_ok=True)
            RESULTS_FILE.write_text(json.dumps({"runs": rows}, indent=1))
            for r in new:
                print(f"{dataset} {args.budget:.0f}s seed {seed} factor {r['factor']}: {r['test_accuracy']:.4f} "
                      f"({r['epochs']} of {round(r['factor'] * r['candidate_epochs'])} epochs, {r['stopped']}, "
                      f"{r['seconds']:.0f} s)", flush=True)
    same = [r for r in rows if r["budget"] == args.budget and r["factor"] in factors]
    for dataset, cells in paired_summary(same, factors[0]).items():
        for factor, c in cells.items():
            print(f"{dataset:14s} factor {factor:>4s}: {c['mean']:.4f} +- {c['std']:.4f} (n={c['n']}); "
                  f"minus factor {factors[0]:g} on the same search: {100 * c['diff_mean']:+.2f} "
                  f"+- {100 * c['diff_std']:.2f} points")


if __name__ == "__main__":
    main()
