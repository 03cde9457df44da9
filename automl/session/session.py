"""The one orchestration of a search and what follows it; ``ImageClassifier`` and the Prefect tasks are
thin faces over it.

A ``SearchSession`` owns one folder: it opens or resumes the store there, builds the searcher with the
machine facts it needs (the memory limit), runs the loop with whatever batch trainer its face passes
(in-process calls, or Prefect mapped tasks), picks the best candidate, and runs the final fit.
Configuration mistakes that would fail every candidate are refused before the first one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from automl.arch.graph import Graph, initial_graph
from automl.arch.memory import estimate_memory_mb
from automl.arch.morph import OPERATIONS
from automl.config import Params, TrainConfig
from automl.data.pixels import Pixels
from automl.errors import ConfigError, FinalFitError, SearchError
from automl.search.loop import BatchTrainer, SearchStart, SearchSummary, run_search, start_search
from automl.search.records import Candidate, CandidateRecord
from automl.search.store import CandidateStore
from automl.search.strategies import make_searcher
from automl.session.budget import final_fit_seconds, reserve_seconds
from automl.session.candidate import SearchCallback, train_and_record
from automl.session.network import FITTED_MEMBER, SNAPSHOT_MEMBER, Network, Views, network_module, save_network
from automl.session.warm import Root, fitted_roots
from automl.training.device import default_memory_limit_mb, place
from automl.training.protocol import final_epochs, memory_batch_cap, resolve
from automl.training.trainer import (
    EpochCallback,
    TensorData,
    TrainResult,
    eval_batch_size,
    predict_logits,
    set_threads,
    train_candidate,
)

SIZED = ("batch_size", "max_epochs", "patience")  # what the protocol sizes from the data when left 0

# Params a resumed search may change: the budget, where training runs, and what happens after the search.
RESUMABLE = ("search.time_limit", "search.max_candidates", "search.max_consecutive_failures", "final_fit.",
             "train.device", "train.threads")


def check_params(params: Params) -> None:
    """Refuse, with a ``ConfigError``, settings that would fail every candidate the same way: no
    CUDA for ``train.device=cuda``, unknown operations. Cheap: callers run it before any work."""
    place(params.train.device, params.train.amp)
    unknown = sorted(set(params.search.allowed_operations()) - set(OPERATIONS))
    if unknown:
        raise ConfigError(f"search.operations: unknown {', '.join(unknown)}; use a comma-separated subset of "
                          f"{', '.join(OPERATIONS)}")


def search_identity(params: Params, data: TensorData) -> dict[str, Any]:
    """What a search depends on: its params other than ``RESUMABLE`` and a hash of its tensors."""
    digest = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_val, data.y_val):
        if isinstance(t, Pixels):
            t.digest(digest)
        elif t is not None:
            digest.update(t.contiguous().numpy().tobytes())
    flat = {k: v for k, v in params.search_params().items() if not k.startswith(RESUMABLE)}
    return {**flat, "data_sha256": digest.hexdigest()}


# The final fit trains on train + validation with nothing held out to stop it. A network whose accuracy
# on that very data (eval mode, no augmentation) ends this far below the searched weights' was damaged
# by it (seen on dSprites: batch statistics that BatchNorm's running averages no longer match took the
# seed network from 0.99 to 0.20 test accuracy); the searched weights are kept instead.
FINAL_FIT_TOLERANCE = 0.01
MIN_FINAL_SECONDS = 1.0  # what a search that overran its budget leaves the final fit (the guard then judges)


@dataclass(frozen=True)
class FinalModel:
    """The network the final fit produced, and how its training went. ``kept_searched``: the final fit
    lost accuracy on its own training data, so ``state`` holds the searched weights it started from."""

    graph: Graph
    state: dict[str, torch.Tensor]
    result: TrainResult
    fit_accuracy: float  # of the trained weights on the final fit's data (up to guard_images of it), in eval mode
    searched_fit_accuracy: float | None  # of the searched weights on the same data (None: retrained)
    kept_searched: bool = False
    members: tuple[Network, ...] = ()  # averaged with it in the final model (``final_fit.ensemble``)
    fitted_members: int = 1  # of the networks in the final model, best first, those the final fit trained
    snapshots: int = 1  # the best's final fit ran as this many cycles; members start with the earlier ends
    views: Views = Views()  # each image read as these copies (``final_fit.test_shifts``)

    def fields(self) -> dict[str, Any]:
        """The training result's fields with what the guard measured."""
        return {**self.result.fields(), "fit_accuracy": self.fit_accuracy,
                "searched_fit_accuracy": self.searched_fit_accuracy, "kept_searched": self.kept_searched,
                "ensemble": 1 + len(self.members), "fitted_members": self.fitted_members,
                "snapshots": self.snapshots, "test_views": self.views.count,
                "averaged_epochs": self.result.averaged_epochs}

    def module(self) -> torch.nn.Module:
        """The final model in eval mode: the network, or the average of it and its ensemble members,
        reading each image as its ``views``."""
        return self.views.wrap(network_module([(self.graph, self.state), *self.members]))


class SearchSession:
    """One search in ``root`` (its store) with ``params``, and the final fit of its best candidate."""

    def __init__(self, root: str | Path, params: Params) -> None:
        self.params = params
        self.store = CandidateStore(root)
        self._reserve: Callable[[float], float] = lambda limit: 0.0  # set by ``start``: seconds the search leaves

    def start(self, data: TensorData, classes: Sequence[Any], resume: bool = False,
              roots: Sequence[Root] = ()) -> SearchStart:
        """Open the store: resume the search saved there (same identity) or start a new one, from the
        seed network or from ``roots`` (a warm start, ``automl.session.warm``). From here on
        ``params.train`` holds the protocol sized from ``data`` (``automl.training.protocol``)."""
        check_params(self.params)
        set_threads(self.params.train.threads)
        identity = search_identity(self.params, data)
        shape = tuple(data.x_train.shape[1:])
        seed_graph = initial_graph(shape, len(classes), width=self.params.search.seed_width)
        roots, notes = fitted_roots(roots, shape, classes, self.params.search.warm_start_mismatch, self.params.seed)
        limit = self.params.search.max_memory_mb or default_memory_limit_mb(self.params.train.device)
        asked, cap = self.params.train, memory_batch_cap(seed_graph, limit)
        self.params = dataclasses.replace(self.params, train=resolve(asked, len(data.x_train), cap))
        self._check_memory(seed_graph)
        search = self.params.search
        start = start_search(self.store, identity, resume, lambda: make_searcher(
            search.strategy, shape, len(classes), self.params.seed, search, self.params.train.batch_size, limit,
            [(r.graph, r.origin) for r in roots]))
        if start.resumed:  # the protocol the candidates so far trained with, whatever this machine's memory
            train = resolve(self._searched_protocol(asked), len(data.x_train), cap)
            self.params = dataclasses.replace(self.params, train=train)
        else:
            self._keep_roots(roots, notes)
        self.store.save_classes(list(classes))
        self._save_protocol(len(data.x_train), shape[-1])
        self._reserve = self._final_fit_reserve(data)
        return start

    def _final_fit_reserve(self, data: TensorData) -> Callable[[float], float]:
        """What a search of a given time limit leaves at its end under ``final_fit.in_search_budget``:
        the current best's expected final fit (``automl.session.budget``); nothing otherwise."""
        fit = self.params.final_fit
        if not fit.in_search_budget:
            return lambda limit: 0.0
        n_train, n_val = len(data.x_train), 0 if data.x_val is None else len(data.x_val)
        epochs, guard = final_epochs(fit, self.params.train), guard_images(data)
        return lambda limit: reserve_seconds(final_fit_seconds(self.store.best(), epochs, n_train, n_val, guard,
                                                               fit.fitted_members), limit)

    def _save_protocol(self, n_train: int, size: int) -> None:
        train = self.params.train
        self.store.save_protocol({k: getattr(train, k) for k in SIZED})
        self.store.log(f"training protocol: batch {train.batch_size}, up to {train.max_epochs} epochs per candidate, "
                       f"patience {train.patience} ({n_train} training images at {size} px)")

    def _keep_roots(self, roots: Sequence[Root], notes: Sequence[str]) -> None:
        """A new search's warm-start roots: their weights into the store, what was done into its log."""
        for note in notes:
            self.store.log(f"warm start: {note}")
        for r in roots:
            self.store.save_root(r.origin.root, r.weights)
            self.store.log(f"warm start: root {r.origin.root} is candidate #{r.origin.candidate} of "
                           f"{r.origin.source} ({r.graph.describe()}, val accuracy {r.val_accuracy:.4f} there)")

    def _check_memory(self, seed_graph: Graph) -> None:
        """Refuse a ``search.max_memory_mb`` below what the seed network needs to train."""
        limit, batch = self.params.search.max_memory_mb, self.params.train.batch_size
        need = estimate_memory_mb(seed_graph, batch)
        if limit and need > limit:
            raise ConfigError(f"search.max_memory_mb={limit:g} is below what the seed network needs to train "
                              f"({need:.0f} MB at train.batch_size={batch}); raise it or lower the batch size")

    def in_process(self, data: TensorData, callbacks: Sequence[SearchCallback] = ()) -> BatchTrainer:
        """Train each round's candidates one after the other in this process."""

        def train_batch(candidates: list[Candidate], deadline: float) -> list[CandidateRecord]:
            return [train_and_record(c, self.store, data, self.params.train, seed=self.params.seed,
                                     deadline=deadline, callbacks=callbacks) for c in candidates]
        return train_batch

    def run(self, start: SearchStart, train_batch: BatchTrainer, time_limit: float | None = None) -> SearchSummary:
        """The search loop with ``search.*`` params; ``time_limit`` overrides ``search.time_limit``."""
        search, limit = self.params.search, time_limit or self.params.search.time_limit
        return run_search(start, train_batch, self.store, time_limit=limit,
                          max_candidates=search.max_candidates, parallel=search.parallel,
                          max_consecutive_failures=search.max_consecutive_failures,
                          reserve=lambda: self._reserve(limit))

    def best(self, summary: SearchSummary | None = None) -> CandidateRecord:
        """The best record, or a ``SearchError`` saying why there is none and what the first failure was."""
        best = summary.best if summary is not None else self.store.best()
        if best is not None:
            return best
        errors = [r.first_error_line() for r in self.store.records() if r.error]
        why = f" ({summary.stopped})" if summary is not None else ""
        first = f" The first error: {errors[0]}." if errors else ""
        raise SearchError(f"no candidate trained successfully{why}.{first} "
                          f"Every candidate is in {self.store.root / 'search.log'}.")

    def final_fit(self, graph: Graph, weights: dict[str, torch.Tensor] | None, data: TensorData, out: str | Path,
                  *, members: Sequence[Network] = (), epochs: int | None = None,
                  on_epoch: EpochCallback | None = None) -> FinalModel:
        """Train ``graph`` on all of ``data`` (from ``weights``, or from scratch when
        ``final_fit.retrain`` or there are none), within ``final_fit.time_limit`` (or, under
        ``final_fit.in_search_budget``, the time the search left of its own), and write
        ``out/{graph.json,weights.pt}``: the trained weights, or the searched ones when training lost
        accuracy on ``data`` (``FINAL_FIT_TOLERANCE``). ``members`` (``ensemble_members``) are saved
        with it in ``out/members/``; the final model averages them all. The first
        ``final_fit.fitted_members`` - 1 of them train the same way after it, each in an equal share of
        the time limit (why: a searched member is trained less than the final-fitted best, and averaging
        it in lowered Indian Pines on every seed, README). With ``final_fit.snapshots`` n > 1 the best's
        fit runs as n cycles and the final model averages their ends too (``_fit_snapshots``)."""
        fit = self.params.final_fit
        set_threads(self.params.train.threads)
        train = resolve(self._searched_protocol(), len(data.x_train))
        n, begin, limit = min(fit.fitted_members, 1 + len(members)), time.time(), self._final_time_limit()
        deadlines = [begin + limit * (i + 1) / n if limit else None for i in range(n)]
        start = None if fit.retrain else weights
        best, snapshots = self._fit_snapshots(graph, start, data, train, (begin, deadlines[0]), epochs, on_epoch)
        fitted = [self._fit_one(g, None if fit.retrain else w, data, train, d, epochs or final_epochs(fit, train),
                                on_epoch) for (g, w), d in zip(members, deadlines[1:])]
        members = [(graph, s.state) for s in snapshots] + [(m.graph, m.state) for m in fitted] + list(members[n - 1:])
        final = dataclasses.replace(best, members=tuple(members), fitted_members=n, snapshots=1 + len(snapshots),
                                    views=Views.of(self.params))
        member_notes = [SNAPSHOT_MEMBER] * len(snapshots) + [FITTED_MEMBER] * len(fitted)
        save_network(graph, final.state, out, members, _notes(final, fitted), final.views, member_notes)
        return final

    def _final_time_limit(self) -> float:
        """``final_fit.time_limit``, or under ``final_fit.in_search_budget`` what the search left of its
        time limit (at least ``MIN_FINAL_SECONDS``; 0, no limit, where the store kept no clock)."""
        fit = self.params.final_fit
        left = self.store.time_left() if fit.in_search_budget else None
        return fit.time_limit if left is None else max(MIN_FINAL_SECONDS, left)

    def _fit_snapshots(self, graph: Graph, start: dict[str, torch.Tensor] | None, data: TensorData,
                       train: TrainConfig, window: tuple[float, float | None], epochs: int | None,
                       on_epoch: EpochCallback | None) -> tuple[FinalModel, list[FinalModel]]:
        """The best's final fit as ``final_fit.snapshots`` annealed cycles, each in an equal share of its
        epochs and of its time ``window`` and each from the end of the one before (a snapshot ensemble:
        why, README "Snapshots of the final fit"). Returns the last cycle's network, its result holding
        every cycle's epochs and the searched weights' accuracy, and the earlier cycles' ends."""
        cycles = self.params.final_fit.snapshots
        total = epochs or final_epochs(self.params.final_fit, train)
        per = max(1, -(-total // cycles))
        begin, end = window
        ends = [begin + (end - begin) * (i + 1) / cycles if end else None for i in range(cycles)]
        done: list[FinalModel] = []
        for deadline in ends:
            offset = sum(d.result.epochs for d in done)  # the console counts the epochs of all cycles
            shown = on_epoch and (lambda info, o=offset: on_epoch(dataclasses.replace(
                info, epoch=o + info.epoch, max_epochs=info.max_epochs and per * cycles)))
            done.append(self._fit_one(graph, done[-1].state if done else start, data, train, deadline, per, shown))
        last = dataclasses.replace(done[-1], result=_joined([d.result for d in done]),
                                   searched_fit_accuracy=done[0].searched_fit_accuracy)  # what the console compares
        return last, done[:-1]

    def _fit_one(self, graph: Graph, start: dict[str, torch.Tensor] | None, data: TensorData,
                 train: TrainConfig, deadline: float | None, epochs: int,
                 on_epoch: EpochCallback | None) -> FinalModel:
        """One network's final fit from ``start`` (None: from scratch), guarded (``_guarded``). The
        searched weights are scored first, and that pass's time sets what the trained weights' pass
        after training is given (``Cutoff``)."""
        fit, searched, per_image = self.params.final_fit, None, 0.0
        if start is not None:
            train = dataclasses.replace(train, learning_rate=train.learning_rate * fit.lr_scale)
            began = time.time()
            searched = _fit_score(graph, start, data)
            per_image = (time.time() - began) / guard_images(data)
        result = train_candidate(graph, start, data, train, seed=self.params.seed, deadline=deadline,
                                 max_epochs=epochs, on_epoch=on_epoch, scored_after=guard_images(data),
                                 score_per_image=per_image, average=fit.average)
        if result.failed or result.state is None:
            why = result.error.splitlines()[0] if result.error else "no weights"
            raise FinalFitError(f"the final fit failed: {why} (the searched candidates are kept in {self.store.root})")
        return _guarded(graph, start, result, data, searched)

    def ensemble_members(self, best_id: int) -> list[Network]:
        """The ``final_fit.ensemble`` - 1 best candidates after ``best_id``, with their searched weights."""
        others = [r for r in self.store.ranked() if r.id != best_id][: self.params.final_fit.ensemble - 1]
        return [(self.store.graph(r.id), self.store.weights(r.id)) for r in others]

    def _searched_protocol(self, train: TrainConfig | None = None) -> TrainConfig:
        """``train`` (default ``params.train``) with what it leaves open (0) taken from the search's
        candidates, so the final fit trains in the same batches, for twice their epochs, whatever its
        data size."""
        train, saved = train or self.params.train, self.store.protocol() or {}
        return dataclasses.replace(train, **{k: saved[k] for k in SIZED if k in saved and not getattr(train, k)})


def _joined(results: Sequence[TrainResult]) -> TrainResult:
    """The cycles of one final fit as one result: the last one's weights, every epoch numbered on."""
    history, epochs = [], 0
    for r in results:
        history += [{**h, "epoch": epochs + h["epoch"]} for h in r.history]
        epochs += r.epochs
    return dataclasses.replace(results[-1], epochs=epochs, history=history,
                               train_seconds=sum(r.train_seconds for r in results))


def _notes(final: FinalModel, fitted: Sequence[FinalModel]) -> list[str]:
    """What the final fit decided, for ``notes.txt``: kept weights, averaging, members and views."""
    notes = [f"accuracy on its own training data fell to {final.fit_accuracy:.4f} from the searched weights' "
             f"{final.searched_fit_accuracy:.4f}: kept the searched weights"] if final.kept_searched else []
    if final.result.averaged_epochs and not final.kept_searched:
        notes.append(f"its weights are the mean of its weights at the ends of its last {final.result.averaged_epochs} "
                     "epochs (final_fit.average)")
    if final.snapshots > 1:
        notes.append(f"its final fit ran as {final.snapshots} annealed cycles, each from the end of the one before; "
                     f"the final model averages it with its weights at the end of the first {final.snapshots - 1}")
    if fitted:
        kept = sum(m.kept_searched for m in fitted)
        notes.append(f"the final model averages it with the next {len(fitted)} candidates by validation accuracy, "
                     f"final-fitted the same way after it, each in 1/{len(fitted) + 1} of the time"
                     + (f" ({kept} kept their searched weights)" if kept else ""))
    if searched := len(final.members) - len(fitted) - (final.snapshots - 1):
        notes.append(f"the final model averages it with the next {searched} candidates by validation "
                     "accuracy (their searched weights)" + (" after those" if fitted else ""))
    if final.views.count > 1:
        notes.append(f"the final model averages each image's class probabilities over {final.views.count} "
                     f"copies of it (shifted by up to {final.views.shift} pixels{', mirrored' * final.views.flip})")
    return notes


GUARD_PIXELS = 4096 * 28 * 28  # the final fit's guard scores at most as many pixels as 4,096 images of 28x28
GUARD_MIN_IMAGES = 512  # ... and at least this many images, when it has them


def guard_images(data: TensorData) -> int:
    """How many of its training images the final fit's guard scores (``_fit_score``): a sample sized by
    pixels, so the guard's cost does not grow with the dataset or the image size. Why: 2 x 4,096 images
    at 128 px took 95 s, more than the final fit's 60 s limit allowed for training and guard together."""
    height, width = data.x_train.shape[-2:]
    return min(len(data.x_train), max(GUARD_MIN_IMAGES, GUARD_PIXELS // (height * width)))


def _fit_score(graph: Graph, state: dict[str, torch.Tensor], data: TensorData) -> float:
    """Accuracy on the data it trained on, or on an evenly spaced sample of ``guard_images`` of it: enough
    to see a collapse (0.99 to 0.20), at a cost that does not grow with the dataset (scoring all 45,000
    images of 128 px twice took 15 minutes after a final fit limited to one)."""
    n = len(data.x_train)
    rows = torch.from_numpy(np.unique(np.linspace(0, n - 1, guard_images(data)).round().astype(np.int64)))
    model, batch = network_module([(graph, state)]), eval_batch_size(data.x_train.shape)
    correct = sum(int((predict_logits(model, data.x_train[rows[i : i + batch]]).argmax(1)
                       == data.y_train[rows[i : i + batch]]).sum()) for i in range(0, len(rows), batch))
    return correct / len(rows)


def _guarded(graph: Graph, start: dict[str, torch.Tensor] | None, result: TrainResult, data: TensorData,
             searched: float | None) -> FinalModel:
    """The final fit's weights, unless they score worse on the data they trained on than the searched
    weights ``start`` did (``searched``: their ``_fit_score``; None with no ``start``, from scratch)."""
    assert result.state is not None
    trained = _fit_score(graph, result.state, data)
    if start is not None and searched is not None and trained < searched - FINAL_FIT_TOLERANCE:
        return FinalModel(graph, start, result, trained, searched, kept_searched=True)
    return FinalModel(graph, result.state, result, trained, searched)
