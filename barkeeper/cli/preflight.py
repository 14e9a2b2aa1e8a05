"""Checks a command makes before any work: the Prefect API it was pointed at answers."""

from __future__ import annotations

import os

import httpx

from barkeeper.errors import ParameterError

API_TIMEOUT_S = 5.0


def check_prefect_api() -> None:
    """With PREFECT_API_URL set, its /health must answer; one line saying what to do if not.

    Without it the command starts an ephemeral API of its own, which Prefect checks.
    """
    url = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not url:
        return
    try:
        answer = httpx.get(f"{url}/health", timeout=API_TIMEOUT_S)
        answer.raise_for_status()
    except httpx.HTTPError as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ParameterError(
            f"PREFECT_API_URL: the Prefect API at {url} does not answer ({reason}); "
            "start it (`prefect server start`) or unset PREFECT_API_URL"
        ) from None
