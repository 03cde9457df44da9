"""Exception types. A user-facing error says what is wrong, where (file, column, key) and what to do.

``AutoMLError`` is the documented base: the CLI prints its message without a traceback. A candidate
that fails to train is *not* an exception to the search (it becomes a failed record); only errors that
make every candidate fail stop a run.
"""

import traceback


class AutoMLError(Exception):
    """Base of every error automl raises on purpose."""


class ConfigError(AutoMLError, ValueError):
    """A parameter is unknown or out of range."""


class DataError(AutoMLError, ValueError):
    """The dataset (CSV, images or arrays) cannot be used as given."""


class NotFittedError(AutoMLError, RuntimeError):
    """A method needs ``fit`` (or a loaded model) first."""


class SearchError(AutoMLError, RuntimeError):
    """The search could not produce a trained candidate (every one failed, or too many in a row), or
    its saved files cannot be used."""


class FinalFitError(AutoMLError, RuntimeError):
    """The final fit of the chosen architecture failed; the searched candidates are kept."""


# Why some errors stop the run instead of failing one candidate: they would fail every candidate
# the same way (the disk is full or read-only, the data is unreadable), so going on only burns the
# budget. ENOSPC: no space; EDQUOT: over quota; EROFS: read-only filesystem.
_FATAL_ERRNOS = {28, 122, 30}


def stops_the_run(exc: BaseException) -> bool:
    """Whether ``exc`` must stop the whole run rather than be recorded as one failed candidate."""
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: the user or the system said stop
        return True
    return isinstance(exc, (DataError, ConfigError)) or (isinstance(exc, OSError) and exc.errno in _FATAL_ERRNOS)


def describe_error(exc: BaseException) -> str:
    """A failure as records keep it: type, message, then the last frames of where it was raised."""
    where = "".join(traceback.format_exception(exc, limit=-4)[1:])
    return f"{exc.__class__.__name__}: {exc}\n{where}"
