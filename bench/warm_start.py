"""Warm start: for each morph kind, epochs a child needs to reach its parent's validation accuracy when
it inherits the parent's weights, against the same architecture trained from scratch.

    python -m bench.warm_start [--parent-epochs 4] [--epochs 6] [--dataset mnist5k --image-size 16]

The parent is the seed's initial network trained ``--parent-epochs`` epochs. Each child is one morph of
it; "0" means it starts at (or above) the parent's accuracy, ">E" that it did not get there in E epochs.
Function-preserving morphs should need about zero; shrinking ones keep what fits and need a few.
"""

from __future__ import annotations

import argparse
import json
import random

from automl.arch.graph import initial_graph
from automl.arch.inherit import inherit_chain
from automl.arch.morph import OPERATIONS, random_morph
from automl.config import TrainConfig
from automl.training.trainer import train_candidate
from bench.common import RESULTS, tensor_data


def epochs_to_reach(target: float, start: float | None, curve: list[float]) -> int | None:
    """0 if ``start`` already reaches ``target``; else the first epoch (1-based) that does; None if none."""
    if start is not None and start >= target:
        return 0
    return next((e for e, acc in enumerate(curve, start=1) if acc >= target), None)


def measure(dataset: str = "mnist5k", image_size: int = 16, parent_epochs: int = 4, epochs: int = 6) -> dict:
    data, n_classes = tensor_data(dataset, image_size)
    parent = initial_graph(tuple(data.x_train.shape[1:]), n_classes)
    config = TrainConfig(max_epochs=epochs, patience=epochs)
    trained = train_candidate(parent, None, data, TrainConfig(max_epochs=parent_epochs, patience=parent_epochs))
    target = trained.val_accuracy
    rows = []
    for k, op in enumerate(OPERATIONS):
        child = random_morph(parent, random.Random(k), ops=[op])
        if child is None:
            continue
        warm = train_candidate(child, inherit_chain(parent, trained.state, child), data, config, seed=k)
        cold = train_candidate(child, None, data, config, seed=k)
        rows.append({"operation": op, "inherited_start": warm.inherited_val_accuracy,
                     "epochs_inherited": epochs_to_reach(target, warm.inherited_val_accuracy, _curve(warm)),
                     "epochs_scratch": epochs_to_reach(target, None, _curve(cold))})
    return {"dataset": dataset, "image_size": image_size, "parent_epochs": parent_epochs,
            "parent_val_accuracy": target, "max_epochs": epochs, "morphs": rows}


def _curve(result) -> list[float]:
    return [h["val_accuracy"] for h in result.history]


def table(out: dict) -> str:
    cell = lambda v: f">{out['max_epochs']}" if v is None else str(v)  # noqa: E731
    lines = [f"parent val accuracy {out['parent_val_accuracy']:.4f} after {out['parent_epochs']} epochs",
             f"{'morph':14s} {'start':>7s} {'inherited':>10s} {'scratch':>8s}"]
    lines += [f"{r['operation']:14s} {r['inherited_start']:7.4f} {cell(r['epochs_inherited']):>10s} "
              f"{cell(r['epochs_scratch']):>8s}" for r in out["morphs"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--parent-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    out = measure(args.dataset, args.image_size, args.parent_epochs, args.epochs)
    print(table(out))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "warm_start.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
