"""The console of ``automl run``, copied into a log file: what the user saw, in the run's folder.

Terminal-only output (progress bars redrawn with carriage returns or escape codes) stays out of the
file; every other line goes to both. Installed before Prefect is imported, so its log handler writes
through it too.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from automl.errors import users_to_fix


class Tee:
    """A text stream writing to the console and to a file."""

    def __init__(self, console: TextIO, file: TextIO) -> None:
        self.console, self.file = console, file

    def write(self, text: str) -> int:
        self.console.write(text)
        if not self.file.closed and "\r" not in text and "\x1b[A" not in text:  # not a bar's redraw
            self.file.write(text)
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        if not self.file.closed:
            self.file.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding...: the console's
        return getattr(self.console, name)


@contextmanager
def run_log(folder: str | Path) -> Iterator[Path]:
    """Copy stdout and stderr into ``folder/run-<time>.log`` while the block runs; yield its path."""
    path = Path(folder, f"run-{time.strftime('%Y%m%d-%H%M%S')}.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", buffering=1) as handle:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(out, handle), Tee(err, handle)
        try:
            yield path
        finally:
            sys.stdout, sys.stderr = out, err


class ExpectedErrors(logging.Filter):
    """Drops the traceback from Prefect's log record of a task or flow that failed with an error that
    is the user's to fix (bad input, a full disk): the CLI prints its message once, plainly. Bugs keep
    theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and users_to_fix(record.exc_info[1]):
            record.msg, record.args = record.getMessage().splitlines()[0], ()
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def quiet_expected_errors(loggers: tuple[str, ...] = ("prefect.task_runs", "prefect.flow_runs")) -> Iterator[None]:
    """``ExpectedErrors`` on Prefect's run loggers while the block runs (``--debug`` leaves them off)."""
    quiet = ExpectedErrors()
    for name in loggers:
        logging.getLogger(name).addFilter(quiet)
    try:
        yield
    finally:
        for name in loggers:
            logging.getLogger(name).removeFilter(quiet)
