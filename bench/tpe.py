"""The baseline a user would otherwise reach for: Optuna's TPE over the seed network's hyperparameters
(learning rate, weight decay, dropout, batch size, width multiplier), in the same budget, on the same
split, with the same protocol and final fit as the morphism search. Only the architecture search is
missing, so the gap between the two is what searching architectures adds over tuning one network.

Each trial trains the seed network from scratch with the product's trainer (epochs sized from
``train.candidate_steps`` for the trial's batch size, early stopping on validation) until the budget's
deadline; TPE sees each trial's validation accuracy. The best trial then gets the product's final fit
(twice its epochs on train + validation, guarded) and is scored once on the test split. A row records
every trial (``searched``: number, hyperparameters, validation accuracy, epochs) and the best one's number.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time

import numpy as np
import optuna

from automl import Params
from automl.arch.graph import Graph, initial_graph
from automl.config import TrainConfig
from automl.data.preprocess import Preprocessor
from automl.data.split import stratified_split
from automl.session import SearchSession
from automl.training.protocol import image_size_for, resolve
from automl.training.trainer import TensorData, TrainResult, accuracy, set_threads, train_candidate

BATCH_SIZES = (16, 32, 64, 128)
WIDTH_MULTIPLIERS = (0.5, 1.0, 2.0)


def sample(trial: optuna.Trial, base: TrainConfig, shape: tuple[int, ...], n_classes: int,
           seed_width: int = 64) -> tuple[Graph, TrainConfig]:
    """The trial's seed network (``seed_width`` times its multiplier wide) and training protocol (epochs
    and patience sized for its batch size)."""
    width = round(seed_width * trial.suggest_categorical("width_multiplier", WIDTH_MULTIPLIERS))
    graph = initial_graph(shape, n_classes, width=width, dropout=trial.suggest_float("dropout", 0.0, 0.5))
    config = dataclasses.replace(base, learning_rate=trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
                                 weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
                                 batch_size=trial.suggest_categorical("batch_size", BATCH_SIZES),
                                 max_epochs=0, patience=0)
    return graph, config


def tune(data: TensorData, n_classes: int, params: Params, deadline: float) -> tuple[list[TrainResult], dict]:
    """TPE trials until ``deadline``; returns every result and the best trial's graph, config and state,
    with each trial's hyperparameters and validation accuracy (``searched``: what TPE's edge comes from)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=params.seed))
    shape, results, best = tuple(data.x_train.shape[1:]), [], {"score": (-1.0, 0.0), "searched": []}
    while time.time() < deadline - 1:
        trial = study.ask()
        graph, config = sample(trial, params.train, shape, n_classes, params.search.seed_width)
        config = resolve(config, len(data.x_train))
        result = train_candidate(graph, None, data, config, seed=params.seed, deadline=deadline)
        results.append(result)
        best["searched"].append([trial.number, trial.params, result.val_accuracy, result.epochs])
        if result.failed or result.val_accuracy is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, result.val_accuracy)
        score = (result.val_accuracy, -(result.val_loss or 0.0))
        if score > best["score"]:
            best.update(score=score, graph=graph, config=config, state=result.state, id=trial.number)
    return results, best


def run_tpe(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, params: Params,
            budget: float) -> dict:
    """A bench row: TPE within ``budget`` seconds on ``train``, final fit, test accuracy on ``test``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    set_threads(params.train.threads)
    start = time.time()
    labels = y[train]
    val, fit = stratified_split(labels, [max(params.split.val_fraction, 0.05)], params.seed)
    images = [x[i] for i in train]
    size = image_size_for(params.preprocess.image_size, [images[i] for i in fit], params.train)
    pp = Preprocessor.fit([images[i] for i in fit], labels[fit], size)
    data = TensorData(pp.transform([images[i] for i in fit]), pp.encode(labels[fit]),
                      pp.transform([images[i] for i in val]), pp.encode(labels[val]))
    results, best = tune(data, len(pp.classes), params, start + budget)
    chosen: TrainConfig = best["config"]
    final_params = params.replace(**{f"train.{k}": getattr(chosen, k) for k in
                                     ("learning_rate", "weight_decay", "batch_size", "max_epochs", "patience")})
    with tempfile.TemporaryDirectory() as tmp:
        final = SearchSession(tmp, final_params).final_fit(best["graph"], best["state"],
                                                           TensorData(pp.transform(images), pp.encode(labels)),
                                                           f"{tmp}/final")
    return {"test_accuracy": accuracy(final.module(), pp.transform([x[i] for i in test]), pp.encode(y[test])),
            "seconds": time.time() - start, "n_candidates": len(results),
            "n_failed": sum(r.failed for r in results), "best_val_accuracy": best["score"][0],
            "best_id": best["id"], "searched": best["searched"],
            "inheritance_gaps": [], "final_kept_searched": final.kept_searched}
