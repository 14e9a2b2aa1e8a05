"""GX work in a helper process, on the other core: its import (~3 s) overlaps a run's start-up
and its validations overlap the stream, instead of holding this process's GIL.

`call_gx` runs a stateless function there (here when the helper cannot start); `RemoteChecks`
keeps a run's `FinalChecks` there, batches and Data Docs included, so the GX objects never
cross back: only verdicts (`SuiteResult`) and page paths do.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from barkeeper.core.child import Helper, HelperUnavailable
from barkeeper.quality.final_checks import FinalChecks
from barkeeper.quality.validation import SuiteResult

T = TypeVar("T")

GX = Helper("great_expectations", "barkeeper.quality.gx_helper")


def start_gx() -> None:
    """Start the helper (and its GX import) now; nothing happens if it cannot start."""
    with contextlib.suppress(HelperUnavailable):
        GX.start()


def call_gx(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` run by the helper, or here when the helper cannot take it."""
    try:
        return GX.call(f"{fn.__module__}:{fn.__qualname__}", *args)
    except HelperUnavailable:
        return fn(*args)


class RemoteChecks:
    """A run's `FinalChecks`, kept in the helper: the same calls and results, but `add` does
    not wait for a batch's validation (its verdicts come with a later call), so the upkeep
    goes on with the next session while the helper validates."""

    PENDING = 2  # batches in flight at most (each holds its sessions' prepared frames)

    def __init__(self, run_id: str, data_docs_dir: Path, parameters: Mapping[str, float]):
        self.setup = (run_id, str(data_docs_dir), dict(parameters))
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="barkeeper-gx")
        self._pending: deque[Future[dict[str, list[SuiteResult]]]] = deque()

    def add(
        self, label: str, frames: Mapping[str, pd.DataFrame], rejected: pd.DataFrame
    ) -> dict[str, list[SuiteResult]]:
        """Queue a session; the verdicts of any batches validated since the last call."""
        self._pending.append(self._sender.submit(self._call, "add", label, dict(frames), rejected))
        return self._collect(wait_for=len(self._pending) - self.PENDING)

    def flush(self) -> dict[str, list[SuiteResult]]:
        """Validate what is queued; every verdict not returned yet."""
        self._pending.append(self._sender.submit(self._call, "flush"))
        return self._collect(wait_for=len(self._pending))

    def publish(self) -> dict[str, Path]:
        self._sender.shutdown(wait=True)
        return self._call("publish")

    def _collect(self, wait_for: int) -> dict[str, list[SuiteResult]]:
        results: dict[str, list[SuiteResult]] = {}
        while self._pending and (wait_for > 0 or self._pending[0].done()):
            results.update(self._pending.popleft().result())  # raises what the helper raised
            wait_for -= 1
        return results

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return GX.call(f"{__name__}:_checks_call", self.setup, method, args)
        except HelperUnavailable as error:  # the batch waiting there is gone: say so
            raise RuntimeError(f"the GX validation process ended during the run: {error}") from None


_RUNS: dict[str, FinalChecks] = {}


def _checks_call(setup: tuple[str, str, dict[str, float]], method: str, args: tuple) -> Any:
    """In the helper: the run's FinalChecks (made on first use) does `method(*args)`;
    `publish` ends it."""
    run_id, folder, parameters = setup
    checks = _RUNS.get(run_id)
    if checks is None:
        checks = _RUNS[run_id] = FinalChecks(run_id, Path(folder), parameters)
    if method == "publish":
        del _RUNS[run_id]
    return getattr(checks, method)(*args)


def final_checks(
    run_id: str, data_docs_dir: Path, parameters: Mapping[str, float]
) -> FinalChecks | RemoteChecks:
    """The run's final checks, in the helper when it can start, else in this process."""
    try:
        GX.start()
    except HelperUnavailable:
        return FinalChecks(run_id, data_docs_dir, parameters)
    return RemoteChecks(run_id, data_docs_dir, parameters)
