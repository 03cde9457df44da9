"""``ImageClassifier``: the Auto-Keras-style face of the library (fit, final_fit, evaluate, predict, export).

A thin face over ``automl.session.SearchSession`` (the pipeline's tasks are the other): it runs in
process with no Prefect server, turns arrays into tensors, and keeps the preprocessor. ``path`` keeps
every trained candidate (graph JSON and weights), a readable ``search.log``, the searcher's state and
the classifier's own state, so ``ImageClassifier.load(path)`` brings a fitted classifier back and
``resume=True`` (as in Auto-Keras) continues a search that was interrupted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.arch.builder import build_module
from automl.arch.graph import Graph
from automl.config import Params, from_dict
from automl.data.images import ImageBatch, ImageFiles, as_image_list
from automl.data.images import load_image_dataset as _load_image_dataset
from automl.data.pixels import Moments, Part, Pixels, open_cache, write_cache
from automl.data.preprocess import CHUNK, Preprocessor, pixel_stream, survey
from automl.data.split import stratified_split
from automl.errors import ConfigError, DataError, NotFittedError
from automl.export.model import export_model
from automl.fileio import atomic_path, read_json, write_json
from automl.report.progress import ConsoleProgress, bar, budget_bar
from automl.search.store import SEARCHER_FILE
from automl.session import SearchSession, load_network
from automl.session.warm import Root, roots_from_folder, store_root
from automl.training.protocol import auto_image_size
from automl.training.trainer import TensorData, predict_logits

STATE_FILE = "classifier.json"
Images = ImageBatch | ImageFiles  # arrays in memory, or files read a chunk at a time (load_image_dataset(lazy=True))


class ImageClassifier:
    """Searches an architecture for labelled images, then trains and exports the best one."""

    def __init__(self, path: str | Path = "automodels/", verbose: bool = False, seed: int | None = None,
                 strategy: str | None = None, params: Params | None = None, resume: bool = False,
                 overwrite: bool = False, warm_start: str | Path | None = None) -> None:
        """``resume``: ``fit`` continues the search saved in ``path`` (same data and params; the time
        limit counts the time already spent) instead of starting a new one. ``overwrite``: ``fit`` may
        replace a search already in ``path``; without it (or ``resume``) that is an error, not a wipe.
        ``warm_start`` (``search.warm_start``): the ``path`` of an earlier classifier (or a pipeline's
        work folder, an MLflow run id or ``models:/`` URI on MLflow's tracking URI): the search starts
        from its best networks instead of the seed network (``automl.session.warm``)."""
        self._args = {"path": path, "verbose": verbose, "seed": seed, "strategy": strategy, "params": params,
                      "resume": resume, "overwrite": overwrite, "warm_start": warm_start}  # scikit-learn's clone
        params = params or Params()
        overrides: dict[str, Any] = {}
        if seed is not None:
            overrides["seed"] = seed
        if strategy is not None:
            overrides["search.strategy"] = strategy
        if warm_start is not None:
            overrides["search.warm_start"] = str(warm_start)
        self.params = params.replace(**overrides)
        self.path = Path(path)
        self.verbose = verbose
        self.resume, self.overwrite = resume, overwrite
        self.preprocessor: Preprocessor | None = None
        self.graph: Graph | None = None
        self.model: torch.nn.Module | None = None

    # --- search ----------------------------------------------------------------------------
    def fit(self, x: Images, y: np.ndarray | list, time_limit: float | None = None,
            validation_data: tuple[Images, np.ndarray | list] | None = None) -> "ImageClassifier":
        """Search architectures within ``time_limit`` seconds and keep the best model found. Candidates
        are ranked on ``validation_data`` when given, else on a stratified ``split.val_fraction`` of ``x``.
        ``x`` from ``load_image_dataset(..., lazy=True)`` is decoded a chunk at a time into uint8 caches
        in ``path/data/`` that training reads a batch at a time: no more than a chunk of images is ever in memory."""
        limit = self.params.search.time_limit if time_limit is None else time_limit
        if limit <= 0:
            raise ConfigError(f"time_limit must be positive (seconds), got {time_limit}.")
        if not (self.resume or self.overwrite) and (self.path / SEARCHER_FILE).is_file():
            raise ConfigError(f"{self.path}: holds an earlier search; pass overwrite=True to replace it, "
                              "resume=True to continue it, or another path.")
        images, labels = _check_xy(x, y)
        roots = self._roots()
        if validation_data is None:
            val_idx, train_idx = stratified_split(labels, [self.params.split.val_fraction], self.params.seed)
            (x_tr, y_tr), (x_val, y_val) = ((_take(images, train_idx), labels[train_idx]),
                                            (_take(images, val_idx), labels[val_idx]))
        else:
            (x_tr, y_tr), (x_val, y_val) = (images, labels), _check_xy(*validation_data)
        channels, native = survey(_chunks(x_tr))
        size = self.params.preprocess.image_size or auto_image_size(native, len(x_tr), self.params.train)
        moments = Moments()
        train = self._pixels(x_tr, "train", channels, size, moments)
        self.preprocessor = Preprocessor.of(y_tr.tolist(), size, channels, *moments.result())
        data = TensorData(self._with_stats(train), self.preprocessor.encode(y_tr),
                          self._with_stats(self._pixels(x_val, "val", channels, size)), self.preprocessor.encode(y_val))
        session = SearchSession(self.path, self.params)
        start = session.start(data, self.preprocessor.classes, self.resume, roots)
        callbacks = [ConsoleProgress(time.time() + limit - start.spent)] if self.verbose else []
        with budget_bar(limit, start.spent) if self.verbose else contextlib.nullcontext():
            summary = session.run(start, session.in_process(data, callbacks), time_limit=limit)
        best = session.best(summary)
        self._use(session.store.graph(best.id), session.store.weights(best.id))
        self._save_state(best_id=best.id)
        return self

    def final_fit(self, x_train: Images, y_train: np.ndarray | list, x_test: Images | None = None,
                  y_test: np.ndarray | list | None = None, retrain: bool | None = None,
                  epochs: int | None = None, time_limit: float | None = None) -> dict[str, Any]:
        """Train the best architecture on all of ``x_train``: from its searched weights, or from scratch
        when ``retrain``; within ``time_limit`` seconds when given (``final_fit.time_limit``).
        ``x_test`` is only evaluated at the end, never used to choose anything."""
        self._require_fitted()
        overrides = {k: v for k, v in (("final_fit.retrain", retrain), ("final_fit.time_limit", time_limit))
                     if v is not None}
        params = self.params.replace(**overrides)
        images, labels = _check_xy(x_train, y_train)
        progress = ConsoleProgress(None) if self.verbose else None
        session = SearchSession(self.path, params)
        best_id = read_json(self.path / STATE_FILE)["best_id"]
        final = session.final_fit(session.store.graph(best_id), session.store.weights(best_id),
                                  self._tensors(images, labels), self.path / "final",
                                  members=session.ensemble_members(best_id), epochs=epochs,
                                  on_epoch=progress and progress.final_epoch)
        if progress:
            progress.final_done(final.fit_accuracy, final.searched_fit_accuracy, final.kept_searched)
        self.graph, self.model = final.graph, final.module()
        self._save_state(final=True)
        summary = final.fields()
        if x_test is not None and y_test is not None:
            summary["test_accuracy"] = self.evaluate(x_test, y_test)
        return summary

    # --- use -------------------------------------------------------------------------------
    def evaluate(self, x: Images, y: np.ndarray | list) -> float:
        """Accuracy of the current model on ``(x, y)``."""
        self._require_fitted()
        images, labels = _check_xy(x, y)
        predicted = self.predict_proba(images).argmax(axis=1)
        return float((predicted == self.preprocessor.encode(labels).numpy()).mean())

    def predict_proba(self, x: Images) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``; images read a chunk at a time."""
        self._require_fitted()
        images = x if isinstance(x, ImageFiles) else as_image_list(x)
        return np.concatenate([torch.softmax(predict_logits(self.model, self.preprocessor.images(chunk)), 1).numpy()
                               for chunk in _chunks(images)])

    def predict(self, x: Images) -> np.ndarray:
        """Labels in the user's own label space."""
        proba = self.predict_proba(x)
        return self.preprocessor.decode(proba.argmax(axis=1))

    def score(self, x: Images, y: np.ndarray | list) -> float:
        """Accuracy, as scikit-learn's classifiers name it (``evaluate``)."""
        return self.evaluate(x, y)

    @property
    def classes_(self) -> np.ndarray:
        """The labels the model predicts, in the order of ``predict_proba``'s columns."""
        self._require_fitted()
        return np.asarray(self.preprocessor.classes)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments as given (scikit-learn's ``clone`` and grid searches use them)."""
        return dict(self._args)

    def set_params(self, **changes: Any) -> "ImageClassifier":
        unknown = sorted(set(changes) - set(self._args))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown}; ImageClassifier takes {sorted(self._args)}.")
        self.__init__(**{**self._args, **changes})  # type: ignore[misc]
        return self

    def export(self, out_dir: str | Path) -> dict[str, Path]:
        """TorchScript, ONNX and labels files with preprocessing built in (see ``automl.export.model``)."""
        self._require_fitted()
        return export_model(self.model, self.preprocessor, out_dir)

    @classmethod
    def load(cls, path: str | Path, verbose: bool = False) -> "ImageClassifier":
        """A fitted classifier from its ``path`` (the final model if ``final_fit`` ran, else the best)."""
        state_file = Path(path) / STATE_FILE
        if not state_file.is_file():
            raise NotFittedError(f"{state_file}: not found; run fit first.")
        state = read_json(state_file)
        clf = cls(path, verbose, params=from_dict(state["params"], str(state_file)))
        clf.preprocessor = Preprocessor.from_dict(state["preprocessor"])
        store = SearchSession(path, clf.params).store
        folder = Path(path) / "final" if state.get("final") else store.dir(state["best_id"])
        clf.graph, clf.model = load_network(folder)
        return clf

    # --- internals -------------------------------------------------------------------------
    def _roots(self) -> list[Root]:
        """The warm start's roots: read from a folder here; MLflow forms through the pipeline's resolver
        (MLflow is the pipeline's store), on the tracking URI MLflow is set to."""
        value, top = self.params.search.warm_start, self.params.search.warm_start_top
        if not value or store_root(value) is not None:
            return roots_from_folder(value, top) if value else []
        import mlflow

        from tasks.settings import TrackingConfig
        from tasks.warm import warm_roots

        return warm_roots(value, top, mlflow.get_tracking_uri(), TrackingConfig().registered_model)

    def _tensors(self, x: list | ImageFiles, y: np.ndarray) -> TensorData:
        """The final fit's data: all of ``x`` at the searched input size."""
        pp = self.preprocessor
        return TensorData(self._with_stats(self._pixels(x, "final", pp.channels, pp.image_size)), pp.encode(y))

    def _pixels(self, x: list | ImageFiles, name: str, channels: int, size: int,
                moments: Moments | None = None) -> Part:
        """uint8 pixels of ``x``, made a chunk at a time: in memory for arrays (already there), a
        cache ``path/data/<name>.npy`` for files (read into memory when small, see ``open_cache``)."""
        chunks = pixel_stream(_chunks(x), channels, size)
        if moments is not None:
            chunks = map(moments.add, chunks)
        if not isinstance(x, ImageFiles):
            return np.concatenate(list(chunks))
        path = self.path / "data" / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            write_cache(tmp, (len(x), channels, size, size), chunks)
        return open_cache(path)

    def _with_stats(self, pixels: Part) -> Pixels:
        return Pixels((pixels,), tuple(self.preprocessor.mean), tuple(self.preprocessor.std))

    def _use(self, graph: Graph, state: dict[str, torch.Tensor]) -> None:
        self.graph = graph
        self.model = build_module(graph)
        self.model.load_state_dict(state)  # strict: the weights were made for this graph
        self.model.eval()

    def _save_state(self, **extra: Any) -> None:
        previous = read_json(self.path / STATE_FILE) if (self.path / STATE_FILE).is_file() else {}
        previous.update(extra)
        previous.update(params=self.params.to_dict(), preprocessor=self.preprocessor.to_dict())
        write_json(self.path / STATE_FILE, previous)

    def _require_fitted(self) -> None:
        if self.model is None or self.preprocessor is None:
            raise NotFittedError("this classifier is not fitted yet; call fit first (or ImageClassifier.load).")


def _check_xy(x: Images, y: np.ndarray | list) -> tuple[list[np.ndarray] | ImageFiles, np.ndarray]:
    images, labels = (x if isinstance(x, ImageFiles) else as_image_list(x)), np.asarray(y)
    if labels.ndim != 1:
        raise DataError(f"labels must be one-dimensional, got shape {labels.shape}.")
    if len(images) != len(labels):
        raise DataError(f"got {len(images)} images but {len(labels)} labels.")
    if not len(images):
        raise DataError("the dataset is empty.")
    missing = [i for i, v in enumerate(labels.tolist()) if v is None or (isinstance(v, float) and v != v)]
    if missing:
        raise DataError(f"{len(missing)} label(s) missing (None or NaN) at index {', '.join(map(str, missing[:10]))}"
                        f"{' ...' if len(missing) > 10 else ''}; label those images or leave them out.")
    return images, labels


def load_image_dataset(csv_file_path: str | Path, images_path: str | Path, filename_column: str = "",
                       label_column: str = "", lazy: bool = False) -> tuple[Images, np.ndarray]:
    """Auto-Keras's loader (``automl.data.images.load_image_dataset``), with a progress bar on a terminal;
    ``lazy``: the files, decoded only when ``fit``, ``predict``... read them, a chunk at a time."""
    return _load_image_dataset(csv_file_path, images_path, filename_column, label_column, progress=bar, lazy=lazy)


def _take(images: list[np.ndarray] | ImageFiles, indices: np.ndarray) -> list[np.ndarray] | ImageFiles:
    return images.subset(indices) if isinstance(images, ImageFiles) else [images[i] for i in indices]


def _chunks(images: list[np.ndarray] | ImageFiles) -> Iterator[ImageBatch]:
    if isinstance(images, ImageFiles):
        yield from images.chunks(CHUNK)
    else:
        for start in range(0, len(images), CHUNK):
            yield images[start : start + CHUNK]
