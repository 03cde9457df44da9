"""The one orchestration of a search, its final fit and loading the result; the faces
(``ImageClassifier``, the Prefect tasks) are thin layers over it."""

from automl.session.candidate import SearchCallback, train_and_record
from automl.session.network import load_network
from automl.session.session import FinalModel, SearchSession, check_params, search_identity

__all__ = ["SearchCallback", "train_and_record", "FinalModel", "SearchSession", "check_params", "load_network",
           "search_identity"]
