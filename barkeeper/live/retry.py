"""Retries of a replay's I/O steps (repository reads, result writes) inside one long task."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from time import sleep
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def retrying(call: Callable[[], T], delays_s: Sequence[float], what: str) -> T:
    """`call()`, tried again after each of `delays_s` seconds while it raises; the last error
    propagates. The replay's long-lived stream task does its per-session I/O this way where
    a per-session task would have had `retries=`."""
    for attempt, delay in enumerate(delays_s, start=1):
        try:
            return call()
        except Exception as error:
            log.warning("%s failed (attempt %d): %s; retrying in %s s", what, attempt, error, delay)
            sleep(delay)
    return call()
