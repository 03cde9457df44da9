"""How long should the final fit be, and should it average its last weights? One search, then several
final fits of its best candidate, each from the same searched weights and within the same time limit,
differing only in their epochs (a multiple, ``--factors``, of a candidate's sized epochs), in the share
of their schedule whose weights they average (``--averages``, ``final_fit.average``) and in the cycles they
run in (``--snapshots``, ``final_fit.snapshots``). Paired this way,
the search's own spread (which best it found) cancels out of the comparison, which a benchmark of whole
runs cannot do with three seeds. The first factor and the first average are the baseline.

    python -m bench.final_length --budget 600 --datasets dsprites_fine,mnist5k --factors 2,1
    python -m bench.final_length --budget 300 --datasets dsprites_fine --factors 2 --averages 0,0.5
    python -m bench.final_length --budget 300 --datasets dsprites_fine --factors 2 --snapshots 1,2

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
from pathlib import Path

import numpy as np
import torch

from automl import ImageClassifier, Params
from automl.arch.graph import Graph
from automl.classifier import STATE_FILE
from automl.data.split import stratified_split
from automl.fileio import read_json
from automl.search.store import CandidateStore, load_weights
from automl.session import SearchSession
from automl.session.network import Views, network_module
from automl.training.trainer import predict_logits
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


Variant = tuple[float, float, int]  # (factor, average, snapshots)


def variant(row: dict) -> Variant:
    """A row's final fit: rows from before ``--averages`` did not average, nor from before ``--snapshots``
    run in cycles."""
    return row["factor"], row.get("average") or 0.0, row.get("snapshots", 1)


def search_of(row: dict) -> str:
    return row.get("search", f"{row['dataset']}/{row['seed']}")


def label(v: Variant) -> str:
    return f"{v[0]:g}x" + (f", average {v[1]:g}" if v[1] else "") + (f", {v[2]} snapshots" if v[2] > 1 else "")


ENSEMBLES = (2, 3, 5)  # final_fit.ensemble values scored on each final fit, at no extra training
Tensors = tuple[torch.Tensor, torch.Tensor]


def saved(folder: Path) -> tuple[Graph, dict[str, torch.Tensor]]:
    """The network saved in ``folder`` alone (without its members)."""
    return Graph.from_json((folder / "graph.json").read_text()), load_weights(folder / "weights.pt")


def views_accuracy(views: Views, networks: list, data: Tensors) -> float:
    """Accuracy of ``networks`` averaged, each image read through ``views``."""
    return float((predict_logits(views.wrap(network_module(networks)), data[0]).argmax(1) == data[1]).float().mean())


def ensemble_accuracies(root: str, test: Tensors, val: Tensors) -> tuple[dict[str, float], int]:
    """Test accuracy of the final model as ``final_fit.ensemble`` = k would have made it from this final
    fit: the final-fitted best averaged with the next k - 1 candidates by validation rank (searched
    weights), read through the same test-time views; the members cost no training, so every k is
    scored on the same final fit. ``searched``: averaged with the best's own searched weights instead
    (a snapshot from before the final fit). ``auto``: k chosen on validation (the searched top-k
    ensemble that scores best there, the smaller k on a tie; the final fit has seen the validation
    images, so only searched weights can be scored on them); the k chosen is returned with them."""
    folder, store = Path(root) / "final", CandidateStore(root)
    best, best_id = saved(folder), read_json(Path(root) / STATE_FILE)["best_id"]
    others = [(store.graph(r.id), store.weights(r.id)) for r in store.ranked() if r.id != best_id]
    searched = (store.graph(best_id), store.weights(best_id))
    views = Views.saved_in(folder)

    def accuracy(networks: list, data: Tensors) -> float:
        return views_accuracy(views, networks, data)

    sizes = [k for k in (1, *ENSEMBLES) if k - 1 <= len(others)]
    chosen = max(sizes, key=lambda k: (accuracy([searched, *others[: k - 1]], val), -k))
    out = {str(k): accuracy([best, *others[: k - 1]], test) for k in sizes if k > 1}
    return {**out, "searched": accuracy([best, searched], test),
            "auto": accuracy([best, *others[: chosen - 1]], test)}, chosen


def snapshot_accuracies(root: str, snapshots: int, test: Tensors) -> list[float]:
    """Test accuracy of each cycle's end alone, first to last (the members saved first, then the final
    network), read through the same views: what averaging them adds over each."""
    folder = Path(root) / "final"
    ends = [folder / "members" / str(i) for i in range(1, snapshots)] + [folder]
    return [views_accuracy(Views.saved_in(folder), [saved(end)], test) for end in ends]


def final_fit(clf: ImageClassifier, x: np.ndarray, y: np.ndarray, epochs: int, average: float,
              time_limit: float, snapshots: int = 1) -> dict:
    """One final fit of the search's best, averaging its last ``average`` of weights, in ``snapshots`` cycles."""
    clf.params = clf.params.replace(**{"final_fit.average": average, "final_fit.snapshots": snapshots})
    return clf.final_fit(x, y, epochs=epochs, time_limit=time_limit)


def tensors(clf: ImageClassifier, x: np.ndarray, y: np.ndarray) -> Tensors:
    """Images and labels as the classifier's model reads them."""
    return clf.preprocessor.transform(list(x)), clf.preprocessor.encode(y)


def fitted_pair(clf: ImageClassifier, root: str, x: np.ndarray, y: np.ndarray, test: Tensors, epochs: int,
                time_limit: float) -> dict[str, float]:
    """The best and the second-best candidate each final-fitted in half of ``time_limit`` (the same
    epochs, the same seed), averaged: an ensemble whose members are both as well trained as the time
    allows, which searched members are not (they lowered Indian Pines on every seed). Scored alone
    (the best's half-time fit), as the pair, and as the pair with the next three searched candidates."""
    fit = final_fit(clf, x, y, epochs, 0.0, time_limit / 2)
    store, best_id = CandidateStore(root), read_json(Path(root) / STATE_FILE)["best_id"]
    ranked = [r.id for r in store.ranked() if r.id != best_id]
    if not ranked:
        return {}
    session = SearchSession(root, clf.params.replace(**{"final_fit.time_limit": time_limit / 2}))
    second = session.final_fit(store.graph(ranked[0]), store.weights(ranked[0]), clf._tensors(x, y),
                               Path(root) / "second", epochs=epochs)
    folder, views = Path(root) / "final", Views.saved_in(Path(root) / "final")
    best, others = saved(folder), [(store.graph(i), store.weights(i)) for i in ranked[1:4]]

    def accuracy(networks: list) -> float:
        return views_accuracy(views, networks, test)

    return {"half_alone": accuracy([best]), "second_alone": accuracy([(second.graph, second.state)]),
            "pair": accuracy([best, (second.graph, second.state)]),
            "pair_plus3": accuracy([best, (second.graph, second.state), *others]),
            "half_epochs": fit["epochs"], "second_epochs": second.result.epochs}


def run_seed(dataset: str, seed: int, budget: float, variants: list[Variant], pair: bool = False) -> list[dict]:
    """One search of ``budget * (1 - FINAL_SHARE)`` seconds, then one final fit per variant; the rows
    name their search (by when it ended), so that only final fits of the same search are paired.
    ``pair``: then ``fitted_pair`` at the first variant's epochs, saved in the first row."""
    x, y = load_dataset(dataset)
    train, test = split(y)
    params = Params().replace(**{"preprocess.image_size": IMAGE_SIZE[dataset], "seed": seed})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clf = ImageClassifier(path=tmp, params=params)
        clf.fit(x[train], y[train], time_limit=budget * (1 - FINAL_SHARE))
        epochs, curve, search = candidate_epochs(tmp), best_curve(tmp), f"{dataset}/{seed}/{time.time():.0f}"
        val = stratified_split(y[train], [params.split.val_fraction], seed)[0]  # the classifier's own
        test_data, val_data = (tensors(clf, x[part], y[part]) for part in (test, train[val]))
        for factor, average, snapshots in variants:
            start = time.time()
            final = final_fit(clf, x[train], y[train], max(1, round(factor * epochs)), average,
                              budget * FINAL_SHARE, snapshots)
            rows.append({"dataset": dataset, "budget": budget, "seed": seed, "search": search,
                         "factor": factor, "average": average, "snapshots": snapshots,
                         "averaged_epochs": final["averaged_epochs"], "candidate_epochs": epochs,
                         "epochs": final["epochs"], "stopped": final["stopped"],
                         "kept_searched": final["kept_searched"], "seconds": time.time() - start,
                         "test_accuracy": clf.evaluate(x[test], y[test]), **curve})
            rows[-1]["ensembles"], rows[-1]["ensemble_auto_k"] = ensemble_accuracies(tmp, test_data, val_data)
            if snapshots > 1:
                rows[-1]["snapshots_alone"] = snapshot_accuracies(tmp, snapshots, test_data)
        if pair:  # last: it replaces the final fit in tmp
            rows[0]["pair"] = fitted_pair(clf, tmp, x[train], y[train], test_data, round(variants[0][0] * epochs),
                                          budget * FINAL_SHARE)
    return rows


def paired_summary(rows: list[dict], baseline: Variant) -> dict[str, dict[str, dict[str, float]]]:
    """Per dataset and variant (``label``): mean and standard deviation of test accuracy, and of its
    difference from ``baseline``'s on the same search (the pairs; rows from before searches were named
    were one search per seed)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset]
        base = {search_of(r): r["test_accuracy"] for r in mine if variant(r) == baseline}
        for v in sorted({variant(r) for r in mine}, key=lambda v: (-v[0], v[1], v[2])):
            acc = {search_of(r): r["test_accuracy"] for r in mine if variant(r) == v}
            diffs = [acc[s] - base[s] for s in acc if s in base]
            out.setdefault(dataset, {})[label(v)] = {
                "mean": statistics.fmean(acc.values()), "std": statistics.pstdev(acc.values()),
                "diff_mean": statistics.fmean(diffs) if diffs else float("nan"),
                "diff_std": statistics.pstdev(diffs) if diffs else float("nan"), "n": len(acc)}
    return out


def ensemble_summary(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per dataset and ensemble size k: mean test accuracy of the final model with k members, and of
    its difference from the same final fit alone (the pairs)."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in rows:
        for k, acc in r.get("ensembles", {}).items():
            out.setdefault(r["dataset"], {}).setdefault(k, []).append((acc, acc - r["test_accuracy"]))
    return {d: _cells(c) for d, c in out.items()}


def pair_summary(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per dataset, each ``fitted_pair`` score: its mean, and the mean of its difference from the
    whole-time final fit of the same search (the row's own test accuracy)."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in rows:
        for k, acc in r.get("pair", {}).items():
            if not k.endswith("epochs"):
                out.setdefault(r["dataset"], {}).setdefault(k, []).append((acc, acc - r["test_accuracy"]))
    return {d: _cells(c) for d, c in out.items()}


def _cells(cells: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    """Mean and std of each cell's accuracies and of their paired differences."""
    return {k: {"mean": statistics.fmean(a for a, _ in v), "std": statistics.pstdev(a for a, _ in v),
                "diff_mean": statistics.fmean(g for _, g in v), "diff_std": statistics.pstdev(g for _, g in v),
                "n": len(v)} for k, v in sorted(cells.items())}


def load_rows() -> list[dict]:
    return json.loads(RESULTS_FILE.read_text())["runs"] if RESULTS_FILE.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--datasets", default="mnist5k,dsprites_fine")
    parser.add_argument("--factors", default="2,1",
                        help="final-fit epochs as multiples of a candidate's; the first is the baseline")
    parser.add_argument("--averages", default="0",
                        help="final_fit.average of each final fit (with each factor); the first is the baseline")
    parser.add_argument("--snapshots", default="1",
                        help="final_fit.snapshots of each final fit (with each factor and average); the first is "
                        "the baseline")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pair", action="store_true",
                        help="also final-fit the best two in half the time each, averaged (fitted_pair)")
    args = parser.parse_args()
    variants = [(float(f), float(a), int(n)) for f in args.factors.split(",") for a in args.averages.split(",")
                for n in args.snapshots.split(",")]
    rows = load_rows()
    for dataset in args.datasets.split(","):
        for seed in range(args.seeds):
            mine = [r for r in rows if (r["dataset"], r["budget"], r["seed"]) == (dataset, args.budget, seed)]
            done = {variant(r) for r in mine if "auto" in r.get("ensembles", {})}  # rows from before: again
            paired = any("pair" in r for r in mine)
            if set(variants) <= done and (paired or not args.pair):
                continue
            new = run_seed(dataset, seed, args.budget, variants, args.pair)  # all of them: pairs come from one search
            rows += new
            RESULTS.mkdir(exist_ok=True)
            RESULTS_FILE.write_text(json.dumps({"runs": rows}, indent=1))
            for r in new:
                print(f"{dataset} {args.budget:.0f}s seed {seed} {label(variant(r))}: {r['test_accuracy']:.4f} "
                      f"({r['epochs']} of {round(r['factor'] * r['candidate_epochs'])} epochs, {r['stopped']}, "
                      f"{r['averaged_epochs']} averaged, {r['seconds']:.0f} s; ensemble on validation: "
                      f"{r['ensemble_auto_k']}){'; fitted pair: ' + str(r['pair']) if 'pair' in r else ''}"
                      f"{'; each cycle alone: ' + str(r['snapshots_alone']) if 'snapshots_alone' in r else ''}",
                      flush=True)
    same = [r for r in rows if r["budget"] == args.budget and variant(r) in variants]
    for dataset, cells in paired_summary(same, variants[0]).items():
        for name, c in cells.items():
            print(f"{dataset:14s} {name:>16s}: {c['mean']:.4f} +- {c['std']:.4f} (n={c['n']}); "
                  f"minus {label(variants[0])} on the same search: {100 * c['diff_mean']:+.2f} "
                  f"+- {100 * c['diff_std']:.2f} points")
    for dataset, cells in pair_summary(same).items():
        for k, c in cells.items():
            print(f"{dataset:14s} {'fitted ' + k:>16s}: {c['mean']:.4f} +- {c['std']:.4f} (n={c['n']}); "
                  f"minus the whole-time fit alone: {100 * c['diff_mean']:+.2f} +- {100 * c['diff_std']:.2f} points")
    for dataset, cells in ensemble_summary(same).items():
        for k, c in cells.items():
            print(f"{dataset:14s} {'ensemble ' + k:>16s}: {c['mean']:.4f} +- {c['std']:.4f} (n={c['n']}); "
                  f"minus the same final fit alone: {100 * c['diff_mean']:+.2f} +- {100 * c['diff_std']:.2f} points")


if __name__ == "__main__":
    main()
