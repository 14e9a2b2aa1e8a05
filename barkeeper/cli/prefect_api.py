"""The one Prefect API a command's flows report to: the configured one, else the local server
(`barkeeper server start`), else a temporary one started here with a patient, retried start-up.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from barkeeper.cli.server import answers, running_server
from barkeeper.errors import BarkeeperError
from barkeeper.settings import temporary_environment

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer

EPHEMERAL_TIMEOUT_S = 90  # Prefect's default 20 s is too short on a busy machine
EPHEMERAL_TRIES = 2
EPHEMERAL_NOTE = (
    "barkeeper: no Prefect server running: using a temporary one "
    "(start one with `barkeeper server start` to save ~8 s a command)"
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@contextmanager
def prefect_api() -> Iterator[str]:
    """Point this process and the processes it starts (Dask workers) at one Prefect API.

    Threads that run flows must run in a copy of the caller's context (`contextvars`), where
    the API's setting lives. A temporary server started here is stopped when the block ends.
    """
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        if urlsplit(configured).hostname in LOOPBACK and not answers(configured, timeout_s=10):
            raise BarkeeperError(
                f"the Prefect API at {configured} (PREFECT_API_URL) does not answer; start it "
                "or unset PREFECT_API_URL"
            )
        yield configured
        return
    local = running_server()
    if local is not None:
        with pointed_at(local.api_url):
            yield local.api_url
        return
    if sys.stderr.isatty():  # a hint for a person; scripts keep their one-line stderr
        print(EPHEMERAL_NOTE, file=sys.stderr)
    server = _start_temporary()
    try:
        with pointed_at(server.api_url):
            yield server.api_url
    finally:
        server.stop()


@contextmanager
def pointed_at(api_url: str) -> Iterator[None]:
    """PREFECT_API_URL = `api_url` in this context and the environment children inherit."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_environment({"PREFECT_API_URL": api_url}),
        temporary_settings({PREFECT_API_URL: api_url}),
    ):
        yield


def _start_temporary() -> SubprocessASGIServer:
    """Prefect's ephemeral API server, given `EPHEMERAL_TRIES` starts of `EPHEMERAL_TIMEOUT_S`."""
    from prefect.server.api.server import SubprocessASGIServer

    for _ in range(EPHEMERAL_TRIES):
        server = SubprocessASGIServer()
        try:
            server.start(timeout=EPHEMERAL_TIMEOUT_S)
            return server
        except RuntimeError:
            server.stop()
    raise BarkeeperError(
        f"the temporary Prefect API server did not start ({EPHEMERAL_TRIES} tries of "
        f"{EPHEMERAL_TIMEOUT_S} s); start a shared one with `barkeeper server start`"
    )
