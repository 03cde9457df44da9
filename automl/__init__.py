"""automl: neural architecture search for image classification, by Bayesian optimization over
network morphisms (the Auto-Keras method), as a library. The Prefect pipeline lives in ``flows/``.

``ImageClassifier`` and ``load_image_dataset`` are imported on first use: they bring torch (seconds),
which ``automl --help`` and the light submodules (``automl.config``, ``automl.errors``) do not need.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from automl.config import Params, load_params
from automl.errors import AutoMLError, ConfigError, DataError, NotFittedError, SearchError

__all__ = ["ImageClassifier", "load_image_dataset", "Params", "load_params", "AutoMLError", "ConfigError",
           "DataError", "NotFittedError", "SearchError", "__version__"]
try:
    __version__ = version("automl")  # pyproject.toml's, once installed
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"
_LAZY = {"ImageClassifier", "load_image_dataset"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from automl import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'automl' has no attribute {name!r}")
