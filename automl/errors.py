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


class CorruptFileError(AutoMLError, ValueError):
    """A file this tool wrote cannot be read back (cut short by a crash or a full disk, or edited)."""

    def __init__(self, path: object, why: object) -> None:
        super().__init__(f"{path}: cannot be read ({why}); it was cut short or damaged. Start over without "
                         "--resume (a new search replaces it), or delete the file's folder.")


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
    return isinstance(exc, (DataError, ConfigError)) or disk_failed(exc)


def disk_failed(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full, over quota or read-only."""
    return isinstance(exc, OSError) and exc.errno in _FATAL_ERRNOS


def users_to_fix(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's to fix (bad input, a full disk): a message, not a traceback."""
    return isinstance(exc, AutoMLError) or disk_failed(exc)


def describe_error(exc: BaseException) -> str:
    """A failure as records keep it: type, message, then the last frames of where it was raised."""
    where = "".join(traceback.format_exception(exc, limit=-4)[1:])
    return f"{exc.__class__.__name__}: {exc}\n{where}"
