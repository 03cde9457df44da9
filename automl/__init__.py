"""automl: neural architecture search for image classification, by Bayesian optimization over
network morphisms (the Auto-Keras method), as a library. The Prefect pipeline lives in ``flows/``."""

from automl.classifier import ImageClassifier, load_image_dataset
from automl.config import Params, load_params
from automl.errors import AutoMLError, ConfigError, DataError, NotFittedError, SearchError

__all__ = ["ImageClassifier", "load_image_dataset", "Params", "load_params", "AutoMLError", "ConfigError",
           "DataError", "NotFittedError", "SearchError"]
