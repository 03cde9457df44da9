"""Which validation score should rank the candidates? One search per seed, then every successful
candidate's validation curve (its accuracy after each epoch) and the test accuracy of its searched
weights; each rule's pick is compared with the best candidate on test (its regret, in points).

    python -m bench.ranking_rules --datasets dsprites_fine --budgets 300 --seeds 5   # ~22 min

Why: on the sprite tasks a candidate's validation accuracy moves 1 to 4 points from one epoch to the
next even where its learning rate has annealed (0.2-0.5 on MNIST and Indian Pines), and a record keeps
its best epoch's. The maximum of a noisy curve favours the noisiest candidate, and more candidates (a
longer budget) give it more chances. The rules: ``max`` (the product's: best epoch, ties by loss),
``last`` epoch, the mean of the last quarter of the epochs, of the last 3 and of the last half, and
``gp mean``: each candidate's score smoothed over the architectures like it (``gp_means``), against the
winner's curse of picking the maximum of many noisy scores; ``max shifted``: the best epoch's weights
scored on validation through the final model's test-time views (``Views``), as the product ships them,
with regrets against test accuracy through the same views too (searches saved since the
twenty-second session).
``--final-fit``: where ``max shifted`` picks another candidate than ``max``, both picks are final-fitted
(the product's default final fit, in the final fit's share of the budget) and scored on test through
the views: a better pick on searched weights is worth something only if it still ships better.

    python -m bench.ranking_rules --datasets dsprites_fine --budgets 300 --first-seed 10 --seeds 10 \
        --final-fit  # ~6 min a seed

Searches are saved to ``bench/results/ranking_rules.json`` as they finish and skipped when run again;
the searches saved before they recorded their architectures (the twelfth session's, on the protocol of
then) stay in the file and out of the table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from collections.abc import Callable

import numpy as np
import torch

from automl import ImageClassifier, Params
from automl.arch.graph import Graph
from automl.data.split import stratified_split
from automl.search.gp import GaussianProcess
from automl.search.kernel import describe, edit_distances
from automl.search.store import CandidateStore
from automl.session import SearchSession
from automl.session.network import Views, network_module
from automl.training.trainer import predict_logits
from bench.common import RESULTS, load_dataset
from bench.final_length import tensors
from bench.search_strategies import FINAL_SHARE, IMAGE_SIZE, split

RESULTS_FILE = RESULTS / "ranking_rules.json"


def tail_mean(curve: list[float], k: int) -> float:
    """Mean of the last ``k`` (at least 1) values of ``curve``."""
    return statistics.fmean(curve[-max(1, k):])


def gp_means(search: dict) -> list[float]:
    """Each candidate's validation accuracy as the posterior mean, at its own architecture, of a GP on
    the searcher's edit-distance kernel whose noise is the sampling variance of an accuracy measured on
    ``n_val`` images. A score that only one architecture reached counts for less than the same score
    shared by its neighbours: the maximum of many noisy scores is biased up, the more so the more
    candidates a longer search scores."""
    cands = search["candidates"]
    y = np.array([c["val"] for c in cands], dtype=float)
    if len(y) < 2 or y.std() == 0:
        return list(y)
    descriptors = [describe(Graph.from_dict(c["graph"])) for c in cands]
    D = edit_distances(descriptors, descriptors)
    noise = float(np.mean(y * (1 - y))) / search["n_val"] / float(y.var())  # in the GP's standardized units
    return list(GaussianProcess().fit(D, y, noises=(max(noise, 1e-4),)).predict(D).mean)


def by(key: Callable[[dict], tuple[float, ...]]) -> Callable[[dict], dict]:
    """A rule that ranks each candidate on its own."""
    return lambda search: max(search["candidates"], key=key)


def by_gp_mean(search: dict) -> dict:
    means = gp_means(search)
    return max(zip(means, search["candidates"]), key=lambda mc: (mc[0], mc[1]["val"]))[1]


RULES: dict[str, Callable[[dict], dict]] = {
    "max": by(lambda c: (c["val"], -c["loss"])),
    "last": by(lambda c: (c["curve"][-1],)),
    "tail quarter": by(lambda c: (tail_mean(c["curve"], math.ceil(len(c["curve"]) / 4)),)),
    "tail 3": by(lambda c: (tail_mean(c["curve"], 3),)),
    "tail half": by(lambda c: (tail_mean(c["curve"], len(c["curve"]) // 2),)),
    "gp mean": by_gp_mean,  # needs the architectures: searches saved since the twenty-first session
    "max shifted": by(lambda c: (c["val_views"], c["val"], -c["loss"])),  # searches with "views"
}
VIEWS_ONLY = {"max shifted"}  # the rules that need a search's scores through the test-time views


def regrets(searches: list[dict], test: str = "test") -> dict[str, dict[str, float]]:
    """Per rule: mean and standard deviation over searches of (test accuracy of the rule's pick minus
    the best test accuracy among the search's candidates), in points, and the searches where its pick
    differs from ``max``'s. ``test``: the candidates' field to score them by (``test_views``: through
    the test-time views)."""
    out = {}
    viewed = all("views" in s for s in searches)
    for name, rule in RULES.items():
        if name in VIEWS_ONLY and not viewed:
            continue
        gaps, differs = [], 0
        for s in searches:
            pick, now = rule(s), RULES["max"](s)
            gaps.append(100 * (pick[test] - max(c[test] for c in s["candidates"])))
            differs += pick["id"] != now["id"]
        out[name] = {"mean": statistics.fmean(gaps), "std": statistics.pstdev(gaps), "n": len(gaps),
                     "differs_from_max": differs}
    return out


def accuracy(module: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    x, y = data
    return float((predict_logits(module, x).argmax(1) == y).float().mean())


def final_fits(clf: ImageClassifier, root: str, search: dict, x: np.ndarray, y: np.ndarray,
               test: tuple[torch.Tensor, torch.Tensor]) -> dict[str, dict]:
    """Where ``max shifted`` and ``max`` pick different candidates of ``search``, each pick final-fitted
    on ``x``, ``y`` as the product would (from its searched weights, in ``final_fit.time_limit``) and its
    final model's accuracy on ``test`` through the views, with the epochs it trained; {} where they agree."""
    picks = {name: RULES[name](search)["id"] for name in ("max", "max shifted")}
    if picks["max"] == picks["max shifted"]:
        return {}
    store, session, data = CandidateStore(root), SearchSession(root, clf.params), clf._tensors(x, y)
    out = {}
    for name, cid in picks.items():
        final = session.final_fit(store.graph(cid), store.weights(cid), data, f"{root}/final {name}")
        out[name] = {"id": cid, "test_views": accuracy(final.module(), test), "epochs": final.result.epochs}
    return out


def run_search(dataset: str, seed: int, budget: float, final_fit: bool = False) -> dict:
    """One search as ``bench.search_strategies`` runs it (75 % of ``budget``); every candidate's curve,
    and its searched weights' accuracy on test and, through the final model's views, on validation
    and test. ``final_fit``: then ``final_fits`` of the two rules' picks, under ``"final"``."""
    x, y = load_dataset(dataset)
    train, test = split(y)
    params = Params().replace(**{"preprocess.image_size": IMAGE_SIZE[dataset], "seed": seed,
                                 "final_fit.time_limit": budget * FINAL_SHARE})
    val = train[stratified_split(y[train], [params.split.val_fraction], params.seed)[0]]  # as ``fit`` splits
    views = Views.of(params)
    with tempfile.TemporaryDirectory() as tmp:
        clf = ImageClassifier(path=tmp, params=params)
        clf.fit(x[train], y[train], time_limit=budget * (1 - FINAL_SHARE))
        xt, xv = tensors(clf, x[test], y[test]), tensors(clf, x[val], y[val])
        store, candidates = CandidateStore(tmp), []
        for r in (r for r in store.records() if r.succeeded):
            graph = store.graph(r.id)
            module = network_module([(graph, store.weights(r.id))])
            candidates.append({"id": r.id, "operation": r.operation, "val": r.val_accuracy, "loss": r.val_loss,
                               "curve": [h["val_accuracy"] for h in r.history], "graph": graph.to_dict(),
                               "test": accuracy(module, xt), "val_views": accuracy(views.wrap(module), xv),
                               "test_views": accuracy(views.wrap(module), xt)})
        search = {"dataset": dataset, "seed": seed, "budget": budget, "n_val": len(val),
                  "views": [views.shift, views.flip], "candidates": candidates}
        if final_fit:
            search["final"] = final_fits(clf, tmp, search, x[train], y[train], xt)
    return search


def final_fit_summary(searches: list[dict]) -> dict[str, float]:
    """Over the searches with final fits: how many, on how many the picks differ, and the mean and
    standard deviation, in points, of ``max shifted``'s final model minus ``max``'s where they do."""
    fitted = [s["final"] for s in searches if "final" in s]
    diffs = [100 * (f["max shifted"]["test_views"] - f["max"]["test_views"]) for f in fitted if f]
    return {"searches": len(fitted), "differ": len(diffs), "mean": statistics.fmean(diffs) if diffs else math.nan,
            "std": statistics.pstdev(diffs) if diffs else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="dsprites_fine")
    parser.add_argument("--budgets", default="300")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (--seeds of them)")
    parser.add_argument("--final-fit", action="store_true",
                        help="final-fit the picks of max and max shifted where they differ (searches not saved yet)")
    args = parser.parse_args()
    rows = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else []
    for dataset in args.datasets.split(","):
        for budget in (float(b) for b in args.budgets.split(",")):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                if any((r["dataset"], r["budget"], r["seed"]) == (dataset, budget, seed) and "views" in r
                       for r in rows):
                    continue
                rows.append(run_search(dataset, seed, budget, args.final_fit))
                RESULTS_FILE.write_text(json.dumps(rows, indent=1))
            same = [r for r in rows if r["dataset"] == dataset and r["budget"] == budget and "n_val" in r]
            viewed = [r for r in same if "views" in r]
            for label, searches, test in (("", same, "test"), ("[views] ", viewed, "test"),
                                          ("[views, test through them] ", viewed, "test_views")):
                for name, cell in (regrets(searches, test) if searches else {}).items():
                    print(f"{label}{dataset} {budget:.0f}s {name:12s} regret {cell['mean']:+.2f} +- "
                          f"{cell['std']:.2f} points over {cell['n']} searches "
                          f"(pick differs from max on {cell['differs_from_max']})")
            fits = final_fit_summary(same)
            if fits["searches"]:
                print(f"[final fits] {dataset} {budget:.0f}s max shifted minus max, final models through the "
                      f"views: {fits['mean']:+.2f} +- {fits['std']:.2f} points where the picks differ "
                      f"({fits['differ']} of {fits['searches']} searches)")


if __name__ == "__main__":
    main()
