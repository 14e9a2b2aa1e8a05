"""Prefect's noise is not the user's: its logs are quiet on a terminal unless `--verbose`.

Set in the environment before Prefect is imported, so the ephemeral API server the command
starts (a child process with this environment) is quiet too: its own bookkeeping errors
(`database is locked` on its SQLite file, telemetry) do not change barkeeper's results, and
barkeeper reports what does in one line.
"""

from __future__ import annotations

import logging
import os

OWN_LOGGERS = ("barkeeper", "tasks", "flows", "models")  # ours keep their warnings


def quiet_prefect(verbose: bool) -> None:
    """Prefect INFO logs and Prefect/library tracebacks off for this command unless `verbose`."""
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
        return
    os.environ["PREFECT_LOGGING_LEVEL"] = "CRITICAL"  # flow/task run logs, client
    os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "CRITICAL"  # the API server, uvicorn
    os.environ["PREFECT_LOGGING_ROOT_LEVEL"] = "CRITICAL"  # libraries (SQLAlchemy pool, Dask)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
