"""Exception types. A user-facing error says what is wrong, where (file, column, key) and what to do.

``AutoMLError`` is the documented base: the CLI prints its message without a traceback. A candidate
that fails to train is *not* an exception to the search (it becomes a failed record); only errors that
make every candidate fail stop a run.
"""


class AutoMLError(Exception):
    """Base of every error automl raises on purpose."""


class ConfigError(AutoMLError, ValueError):
    """A parameter is unknown or out of range."""


class DataError(AutoMLError, ValueError):
    """The dataset (CSV, images or arrays) cannot be used as given."""


class NotFittedError(AutoMLError, RuntimeError):
    """A method needs ``fit`` (or a loaded model) first."""
