"""Prefect's noise is not the user's: nothing of Prefect's on a terminal unless `--verbose`.

Set in the environment before Prefect is imported, so the ephemeral API server the command
starts (a child process with this environment) is quiet too: its own bookkeeping errors
(`database is locked` on its SQLite file, telemetry) do not change barkeeper's results, and
barkeeper reports what does in one line. Prefect's log handler to its API is left as it was,
so runs keep their logs in the Prefect UI.
"""

from __future__ import annotations

import logging
import os
import sys

OWN_LOGGERS = ("barkeeper", "tasks", "flows", "models")


class StderrLines(logging.StreamHandler):
    """One line per record on the current `sys.stderr` (looked up at each record)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(OneLine())

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class OneLine(logging.Formatter):
    """`barkeeper: warning: <message> (<exception>)`: a record as one line, no traceback.

    Logged errors are conditions the command carried on from, so warnings to the user.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = f"barkeeper: warning: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line += f" ({type(error).__name__}: {' '.join(str(error).split())})"
        return line


def quiet_prefect(verbose: bool) -> None:
    """Prefect's console output off for this command unless `verbose` (then INFO and up).

    barkeeper's own warnings still reach stderr, each as one line.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "NOTSET"
        os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "WARNING"  # Prefect's default
        return
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # what runs send to the API
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"  # Prefect's terminal output
    os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "CRITICAL"  # the ephemeral API server, uvicorn
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if not any(isinstance(h, StderrLines) for h in logger.handlers):
            logger.addHandler(StderrLines())
        logger.propagate = False  # not again through Prefect's handlers
