"""Test accuracy at equal time budgets: the Bayesian morphism search against what a user would pick
instead, on real datasets from installed packages: random morphs, the seed network trained for the whole
budget (``initial``), Optuna's TPE over the seed network's hyperparameters (``tpe``, bench/tpe.py), and an
SVC and a logistic regression on pixels.

    python -m bench.search_strategies --budgets 90                 # 3 seeds, both datasets (~40 min)
    python -m bench.search_strategies --budgets 120,300,600        # the headline table (~6 hours)
    python -m bench.search_strategies --budgets 60 --seeds 1 --datasets digits8x8   # a quick look

For each dataset, budget, strategy and seed: ``ImageClassifier.fit`` within the budget, ``final_fit``
(``--final-epochs``) on the training split, test accuracy on a fixed stratified 20 % test split. The SVC
(scikit-learn defaults, pixels scaled to [0, 1]) trains once per dataset on the same split.
Every finished run is saved at once to ``bench/results/search_strategies.json`` and skipped when the
command is run again (``--fresh`` redoes them), so a long run interrupted loses nothing.
Prints mean +- standard deviation per cell and plots accuracy against budget
(``bench/results/search_strategies.png``). It also checks, on these real runs, that every child made by
function-preserving morphs starts (inherited weights, before training) within 0.5 points of its
parent's validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from automl import ImageClassifier, Params
from automl.arch.graph import Graph
from automl.arch.morph import PRESERVING
from automl.config import parse_set
from automl.data.split import stratified_split
from automl.search.records import CandidateRecord, Status, ranked
from automl.search.store import CandidateStore, load_weights
from automl.session.network import load_network, network_module
from automl.training.trainer import predict_logits
from bench.common import RESULTS, load_dataset, machine

STRATEGIES = ("bayesian", "random", "initial", "tpe")  # tpe: Optuna over the seed network (bench/tpe.py)
PIXEL_BASELINES = ("svc", "logreg")
IMAGE_SIZE = {"mnist5k": 16, "digits8x8": 8, "pines": 17, "dsprites": 32,  # smaller: more candidates per budget
              "dsprites64": 0, "dsprites_turn": 0,
              "dsprites_fine": 0}  # 0: the product's own choice (39 px for the sprites);
# runs at 64 px carry preprocess.image_size=64
RESULTS_FILE = RESULTS / "search_strategies.json"
FINAL_EPOCHS = 0  # the headline protocol's final fit: 0 = the default, sized from the candidates' epochs
FINAL_SHARE = 0.25  # ... inside the budget: the search gets 75 % of it, the final fit the rest


def split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    test, train = stratified_split(y, [0.2], seed=0)
    return train, test


def run_search(dataset: str, strategy: str, seed: int, budget: float, final_epochs: int,
               overrides: dict[str, str], final_share: float = 0.0) -> dict:
    """One row. ``final_share`` > 0: the budget holds search and final fit, the final fit getting
    that share of it (``final_fit.time_limit``); 0: the search gets it all, the final fit is unbounded."""
    x, y = load_dataset(dataset)
    train, test = split(y)
    params = Params().replace(**{"preprocess.image_size": IMAGE_SIZE[dataset], "seed": seed, **overrides,
                                 "final_fit.time_limit": budget * final_share})
    search_budget = budget * (1 - final_share)
    if strategy == "tpe":
        from bench.tpe import run_tpe  # Optuna comes with the bench extra only

        return run_tpe(x, y, train, test, params, search_budget)
    params = params.replace(**{"search.strategy": strategy})
    with tempfile.TemporaryDirectory() as tmp:
        clf = ImageClassifier(path=tmp, params=params)
        start = time.time()
        clf.fit(x[train], y[train], time_limit=search_budget)
        store = CandidateStore(tmp)
        records = store.records()
        final = clf.final_fit(x[train], y[train], epochs=final_epochs or None)
        seconds = time.time() - start
        accuracy = clf.evaluate(x[test], y[test])
        test_x, test_y = clf.preprocessor.transform(list(x[test])), clf.preprocessor.encode(y[test])
        best_alone = network_module([(Graph.from_json((Path(tmp) / "final" / "graph.json").read_text()),
                                      load_weights(Path(tmp) / "final" / "weights.pt"))])  # without members
        ensembles = ensemble_accuracies(top_modules(store, records, max(ENSEMBLE_SIZES)), best_alone, test_x, test_y)
        unshifted = load_network(Path(tmp) / "final", views=False)[1]  # without final_fit.test_shifts
        unshifted_accuracy = float((predict_logits(unshifted, test_x).argmax(1) == test_y).float().mean())
    return {"test_accuracy": accuracy, "seconds": seconds, "n_candidates": len(records),
            "n_failed": sum(r.status is Status.FAILED for r in records),
            "best_val_accuracy": max((r.val_accuracy or 0) for r in records),
            "best_architecture": ranked(records)[0].architecture if ranked(records) else "",
            "best_id": ranked(records)[0].id if ranked(records) else None,
            "searched": [[r.id, r.operation, r.val_accuracy] for r in records],
            "inheritance_gaps": inheritance_gaps(records), "final_kept_searched": final["kept_searched"],
            "curve": best_so_far(records, start), **ensembles,
            "test_accuracy_unshifted": unshifted_accuracy}


ENSEMBLE_SIZES = (2, 3, 5)


def top_modules(store: CandidateStore, records: list[CandidateRecord], k: int) -> list[torch.nn.Module]:
    """The ``k`` best candidates by validation rank, with their searched weights."""
    return [network_module([(store.graph(r.id), store.weights(r.id))]) for r in ranked(records)[:k]]


def ensemble_accuracies(ranked: list[torch.nn.Module], final: torch.nn.Module, x: torch.Tensor,
                        y: torch.Tensor) -> dict[str, dict[str, float]]:
    """Test accuracy of averaging the softmax of the top-k candidates (``ranked``, best first), for the
    ablation of an ensemble at no extra training: ``ensemble_searched`` (their searched weights) and
    ``ensemble_final`` (the final-fitted best, ``final``, in place of its searched weights)."""
    probs = [torch.softmax(predict_logits(m, x), 1) for m in ranked]
    final_probs = torch.softmax(predict_logits(final, x), 1)

    def acc(members: list[torch.Tensor]) -> float:
        return float((torch.stack(members).mean(0).argmax(1) == y).float().mean())

    return {"ensemble_searched": {str(k): acc(probs[:k]) for k in (1, *ENSEMBLE_SIZES) if k <= len(probs)},
            "ensemble_final": {str(k): acc([final_probs, *probs[1:k]]) for k in ENSEMBLE_SIZES if k <= len(probs)}}


def ensemble_gains(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per dataset and k, over every saved run of any protocol: the final model with k members
    (``ensemble_final``) minus the same final model alone, in points. Both without test-time shifts
    (the ensembles are scored without them): against ``test_accuracy_unshifted`` where a run has it."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        alone = r.get("test_accuracy_unshifted", r["test_accuracy"])
        for k, acc in r.get("ensemble_final", {}).items():
            out.setdefault(r["dataset"], {}).setdefault(k, []).append(100 * (acc - alone))
    return {d: {k: {"mean": statistics.fmean(v), "std": statistics.pstdev(v), "n": len(v),
                    "better": sum(g > 0.01 for g in v), "worse": sum(g < -0.01 for g in v)}
                for k, v in sorted(cells.items())} for d, cells in sorted(out.items())}


def best_so_far(records: list[CandidateRecord], start: float) -> list[tuple[float, float]]:
    """(seconds into the search, best validation accuracy so far) at each candidate that finished."""
    done = sorted((r for r in records if r.succeeded and r.finished_at), key=lambda r: r.finished_at or 0.0)
    curve: list[tuple[float, float]] = []
    for r in done:
        best = max(curve[-1][1] if curve else -1.0, r.val_accuracy or 0.0)
        curve.append((round((r.finished_at or start) - start, 2), best))
    return curve


def time_to_seed_accuracy(rows: list[dict], strategy: str = "bayesian") -> dict[str, dict[str, list]]:
    """dataset -> budget -> per seed: the fraction of the budget ``strategy`` needed for its best
    validation accuracy to reach what the seed network trained for the whole budget (``initial``, same
    seed, same validation split) reached; None where it never did. Rows without a curve are skipped."""
    seed_net = {(r["dataset"], r["budget"], r["seed"]): r["best_val_accuracy"] for r in rows
                if r["strategy"] == "initial"}
    out: dict = {}
    for r in rows:
        target = seed_net.get((r["dataset"], r["budget"], r["seed"]))
        if r["strategy"] != strategy or target is None or not r.get("curve"):
            continue
        reached = [t for t, acc in r["curve"] if acc >= target]
        cell = out.setdefault(r["dataset"], {}).setdefault(str(r["budget"]), [])
        cell.append(round(reached[0] / r["budget"], 3) if reached else None)
    return out


def run_pixels(dataset: str, kind: str) -> dict:
    """An outside baseline on raw pixels scaled to [0, 1]: ``svc`` (RBF SVC) or ``logreg`` (logistic
    regression), scikit-learn defaults (the logistic regression with enough iterations to converge)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    x, y = load_dataset(dataset)
    train, test = split(y)
    flat = x.reshape(len(x), -1) / 255.0
    start = time.time()
    model = (SVC() if kind == "svc" else LogisticRegression(max_iter=2000)).fit(flat[train], y[train])
    return {"test_accuracy": float((model.predict(flat[test]) == y[test]).mean()), "seconds": time.time() - start}


def inheritance_gaps(records: list[CandidateRecord]) -> list[float]:
    """|inherited val accuracy - parent's val accuracy| for children made by preserving morphs only."""
    by_id = {r.id: r for r in records}
    gaps = []
    for r in records:
        parent = by_id.get(r.parent_id)
        ops = (r.operation or "").split("+")
        if parent and parent.val_accuracy is not None and r.inherited_val_accuracy is not None \
                and all(op in PRESERVING for op in ops):
            gaps.append(abs(r.inherited_val_accuracy - parent.val_accuracy))
    return gaps


def summarize(rows: list[dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """dataset -> budget -> strategy -> mean, std, n, mean candidates."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["dataset"], {}).setdefault(str(r["budget"]), {}).setdefault(r["strategy"], []).append(r)
    return {d: {b: {s: {"mean": float(np.mean([r["test_accuracy"] for r in rs])),
                        "std": float(np.std([r["test_accuracy"] for r in rs])), "n": len(rs),
                        "candidates": float(np.mean([r.get("n_candidates", 0) for r in rs]))}
                    for s, rs in cells.items()} for b, cells in budgets.items()} for d, budgets in out.items()}


def plot(summary: dict, svc: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(5 * len(summary), 3.8), squeeze=False)
    for ax, (dataset, budgets) in zip(axes[0], summary.items()):
        xs = sorted(budgets, key=float)
        for strategy, color in zip(STRATEGIES, ["#4c72b0", "#dd8452", "#55a868", "#8172b3"]):
            pts = [(float(b) / 60, budgets[b][strategy]) for b in xs if strategy in budgets[b]]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts], yerr=[p[1]["std"] for p in pts],
                            marker="o", capsize=4, color=color, label=strategy)
        if dataset in svc:
            ax.axhline(svc[dataset], color="grey", linestyle="--", label="SVC (pixels)")
        ax.set_title(dataset)
        ax.set_xlabel("search budget (minutes)")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def load_rows() -> list[dict]:
    return json.loads(RESULTS_FILE.read_text())["runs"] if RESULTS_FILE.exists() else []


def save_rows(rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps({"runs": rows}, indent=1))
    tmp.replace(RESULTS_FILE)


def key(r: dict) -> tuple:
    """What makes two rows the same measurement; rows from before the machine was recorded have none."""
    return (r["dataset"], float(r["budget"]), r["strategy"], r["seed"], r["final_epochs"], tuple(r["overrides"]),
            r.get("final_share", 0.0), r.get("machine"))


def print_table(summary: dict, svc: dict[str, float], logreg: dict[str, float]) -> None:
    header = " ".join(f"{s:>24s}" for s in STRATEGIES)
    print(f"\n{'dataset':10s} {'budget':>7s} {header} {'svc':>7s} {'logreg':>7s}")
    for dataset, budgets in summary.items():
        for budget in sorted(budgets, key=float):
            cells = [f"{c['mean']:.4f} +- {c['std']:.4f} ({c['candidates']:.0f})" if (c := budgets[budget].get(s))
                     else "-" for s in STRATEGIES]
            print(f"{dataset:10s} {float(budget):6.0f}s " + " ".join(f"{c:>24s}" for c in cells)
                  + f" {svc.get(dataset, float('nan')):7.4f} {logreg.get(dataset, float('nan')):7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="90", help="search seconds, comma-separated")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--final-epochs", type=int, default=FINAL_EPOCHS)
    parser.add_argument("--final-share", type=float, default=FINAL_SHARE,
                        help="share of each budget the final fit gets (0: unbounded, after a whole-budget search)")
    parser.add_argument("--datasets", default="mnist5k,digits8x8")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter for every run, e.g. --set train.max_epochs=15")
    parser.add_argument("--fresh", action="store_true", help="redo runs already saved")
    args = parser.parse_args()
    rows = load_rows()
    done = set() if args.fresh else {key(r) for r in rows}
    overrides, here = parse_set(args.overrides), machine()
    for dataset in args.datasets.split(","):
        for kind in PIXEL_BASELINES:
            if not any(r["dataset"] == dataset and r["strategy"] == kind for r in rows):
                rows.append({"dataset": dataset, "budget": 0, "strategy": kind, "seed": 0, "final_epochs": 0,
                             "overrides": [], **run_pixels(dataset, kind)})
                save_rows(rows)
        for budget in (float(b) for b in args.budgets.split(",")):
            for seed in range(args.seeds):
                for strategy in args.strategies.split(","):
                    row = {"dataset": dataset, "budget": budget, "strategy": strategy, "seed": seed,
                           "final_epochs": args.final_epochs, "overrides": sorted(args.overrides),
                           "final_share": args.final_share, "machine": here}
                    if key(row) in done:
                        continue
                    row.update(run_search(dataset, strategy, seed, budget, args.final_epochs, overrides,
                                          args.final_share))
                    rows = [r for r in rows if key(r) != key(row)] + [row]
                    save_rows(rows)
                    print(f"{dataset:10s} {budget:5.0f}s {strategy:9s} seed {seed}: test {row['test_accuracy']:.4f} "
                          f"candidates {row['n_candidates']:3d} (failed {row['n_failed']}) "
                          f"max inheritance gap {max(row['inheritance_gaps'], default=0.0):.4f} "
                          f"final fit {'kept the searched weights' if row['final_kept_searched'] else 'kept'} "
                          f"({row['seconds']:.0f}s)", flush=True)
    report(rows, args)


def report(rows: list[dict], args: argparse.Namespace) -> None:
    """Table and plot of the runs matching this command's final epochs and overrides."""
    same = protocol_runs(rows, args.final_epochs, args.overrides, args.final_share)
    svc = svc_scores(rows)
    summary = summarize(same)
    print_table(summary, svc, svc_scores(rows, "logreg"))
    gaps = [g for r in same for g in r.get("inheritance_gaps", [])]
    print(f"\nPreserving-morph children: {len(gaps)}, max |inherited - parent| val accuracy "
          f"{max(gaps, default=0.0):.4f} (target <= 0.005)")
    for dataset, budgets in time_to_seed_accuracy(same).items():
        for budget, fractions in budgets.items():
            print(f"{dataset} {float(budget):.0f}s: bayesian reached the seed network's whole-budget validation "
                  f"accuracy after {fractions} of the budget (per seed; None: never)")
    for dataset, cells in ensemble_gains(rows).items():
        print(f"{dataset}: final model with k members minus alone, all saved runs (points): " + "; ".join(
            f"k={k} {c['mean']:+.2f} +- {c['std']:.2f} ({c['better']} better, {c['worse']} worse of {c['n']})"
            for k, c in cells.items()))
    plot(summary, svc, RESULTS / "search_strategies.png")
    latest = RESULTS / "latest.json"
    if latest.exists():  # the performance summary carries the headline table; keep it current
        out = json.loads(latest.read_text())
        out["accuracy"] = accuracy_section(rows)
        latest.write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS_FILE}, search_strategies.png and the accuracy table of {latest.name}")


def accuracy_section(rows: list[dict]) -> dict:
    """The headline table for ``latest.json``: the default protocol's cells, the SVC, and every run."""
    default = protocol_runs(rows, FINAL_EPOCHS, [], FINAL_SHARE)
    return {"protocol": f"search and the default final fit within the budget (the final fit gets {FINAL_SHARE:.0%} "
                        "of it), test accuracy over seeds",
            "summary": summarize(default), "time_to_seed_accuracy_fraction": time_to_seed_accuracy(default),
            "svc": svc_scores(rows),
            "logreg": svc_scores(rows, "logreg"), "runs": rows}


def protocol_runs(rows: list[dict], final_epochs: int, overrides: list[str], final_share: float) -> list[dict]:
    """The search runs made with these final epochs, overrides and final share: only those share a cell."""
    return [r for r in rows if r["strategy"] not in PIXEL_BASELINES and r["final_epochs"] == final_epochs
            and r["overrides"] == sorted(overrides) and r.get("final_share", 0.0) == final_share]


def svc_scores(rows: list[dict], kind: str = "svc") -> dict[str, float]:
    return {r["dataset"]: r["test_accuracy"] for r in rows if r["strategy"] == kind}


if __name__ == "__main__":
    main()
