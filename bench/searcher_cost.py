"""Searcher cost: seconds for one round of the Bayesian searcher (fit the GP, optimize the acquisition,
propose one candidate) with 10, 50, 100 and 200 observed architectures.

    python -m bench.searcher_cost [--sizes 10,50,100,200]

Observed architectures come from random morph chains (the random strategy's proposals) with a synthetic
accuracy that depends on depth and width, so the GP has structure to fit; the Bayesian searcher is
restored from that history (its JSON state) and asked for one candidate a few times at each size.
The target compares a round at 100 observations with a candidate's mean training time (measured by the
caller on a real search, or here by training the seed network with the default settings).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics

from automl.arch.graph import Graph
from automl.search.records import Outcome, Status
from automl.search.strategies import make_searcher, searcher_from_state
from bench.common import RESULTS, timed

TARGET = 0.02  # of one candidate's mean training time, at 100 observations


def synthetic_accuracy(graph: Graph, rng: random.Random) -> float:
    convs = [l.params["filters"] for l in graph.layers if l.type == "conv"]
    return 0.9 + 0.03 * math.tanh((len(convs) - 4) / 3) + 0.01 * math.log2(max(convs) / 64) + rng.gauss(0, 0.005)


def history(n: int, input_shape: tuple[int, ...] = (1, 28, 28), seed: int = 0) -> dict:
    """State of a random searcher that has been told ``n`` candidates."""
    rng = random.Random(seed)
    searcher = make_searcher("random", input_shape, 10, seed=seed)
    while len(searcher.observations) < n:
        (candidate,) = searcher.ask(1)
        searcher.tell(candidate.id, Outcome(Status.COMPLETE, synthetic_accuracy(candidate.graph, rng)))
    return searcher.to_state()


def round_seconds(n: int, repeats: int = 3) -> float:
    """Median seconds of ``searcher.ask(1)`` for a Bayesian searcher with ``n`` observations."""
    state = dict(history(n), strategy="bayesian")
    times = []
    for _ in range(repeats):
        searcher = searcher_from_state(state)
        times.append(timed(lambda: searcher.ask(1)))
    return statistics.median(times)


def seed_network_train_seconds() -> float:
    """Training time of the seed network with the default settings on the default dataset."""
    from automl.arch.graph import initial_graph
    from automl.config import TrainConfig
    from automl.training.trainer import train_candidate
    from bench.common import tensor_data

    data, n_classes = tensor_data("mnist5k", 28)
    result = train_candidate(initial_graph((1, 28, 28), n_classes), None, data, TrainConfig(), seed=0)
    return result.train_seconds


def measure(sizes: tuple[int, ...] = (10, 50, 100, 200), candidate_seconds: float | None = None) -> dict:
    rounds = {str(n): round(round_seconds(n), 4) for n in sizes}
    out: dict = {"round_seconds": rounds}
    if "100" in rounds:
        seconds = candidate_seconds or seed_network_train_seconds()
        out.update(candidate_train_seconds=round(seconds, 2),
                   searcher_round_fraction_at_100=round(rounds["100"] / seconds, 4), target=TARGET)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50,100,200")
    args = parser.parse_args()
    out = measure(tuple(int(s) for s in args.sizes.split(",")))
    print(json.dumps(out, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "searcher_cost.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
