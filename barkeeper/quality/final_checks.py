"""A replay's final validation: sessions checked in batches, verdicts split back per session.

GX costs a fixed ~0.2-0.5 s per run whatever the rows, so the final frames of several sessions
go through one GX run per suite (and one for the bars rejected as delivered); Data Docs are
built once, when the replay ends. Each session still gets the results a GX run of its own would
give: an expectation that held over the batch held in every session, and one that failed is
failed in the sessions where its rows fail (`row_failures`, the same reading of the suite that
finds the failing keys). Should that reading find no failing row anywhere, the suite is run
again session by session, so a verdict never rests on it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from barkeeper.quality.data_docs import (
    DEFAULT_KEEP_RESULTS,
    SuiteRun,
    build_docs,
    checked_parameters,
    docs_legend,
    validate_suites,
)
from barkeeper.quality.frames import row_failures
from barkeeper.quality.suites import SUITE_NAMES, load_suite_spec
from barkeeper.quality.validation import SuiteResult, successes_in_suite_order, summarise

BATCH_RESULT_FORMAT = {"result_format": "BOOLEAN_ONLY"}
"""A batch's GX results hold successes only (2.5x cheaper than SUMMARY at 700k rows): the
failing rows, their samples and keys come from `row_failures` per session, as for the cycles."""

BATCH_ROWS = 1_000_000
"""Rows held before a batch is validated: bounds memory (~150 MB of prepared frames) while
amortising GX's fixed cost over several sessions of a few hundred symbols."""


@dataclass
class PendingSession:
    label: str
    frames: dict[str, pd.DataFrame]
    rejected: pd.DataFrame

    @property
    def rows(self) -> int:
        return sum(len(f) for f in self.frames.values()) + len(self.rejected)


class FinalChecks:
    """Collects sessions' prepared frames and validates them a batch at a time.

    Parameters
    ----------
    run_id
        Names the GX runs (`<run_id>__<first session>..<last session>`).
    data_docs_dir
        Persistent Data Docs folder.
    parameters
        Overrides of the suites' `$PARAMETER` defaults.
    batch_rows
        A batch is validated once it holds this many rows (and at `flush`).
    """

    def __init__(
        self,
        run_id: str,
        data_docs_dir: Path,
        parameters: Mapping[str, float] | None = None,
        *,
        batch_rows: int = BATCH_ROWS,
        keep_results: int = DEFAULT_KEEP_RESULTS,
    ) -> None:
        self.run_id = run_id
        self.data_docs_dir = Path(data_docs_dir)
        self.parameters = dict(parameters or {})
        self.batch_rows = batch_rows
        self.keep_results = keep_results
        self.specs = {n: load_suite_spec(n) for n in SUITE_NAMES}
        self.pending: list[PendingSession] = []
        self.keys: list[tuple[tuple[str, ...], Any]] = []  # (labels, result key), for the docs

    def add(
        self, label: str, frames: Mapping[str, pd.DataFrame], rejected: pd.DataFrame
    ) -> dict[str, list[SuiteResult]]:
        """Queue a session's prepared frames; returns the results of a batch that filled up."""
        kept = {n: f for n, f in frames.items() if not f.empty}
        self.pending.append(PendingSession(label, kept, rejected))
        if sum(p.rows for p in self.pending) >= self.batch_rows:
            return self.flush()
        return {}

    def flush(self) -> dict[str, list[SuiteResult]]:
        """Validate the queued sessions; their results by session label, in suite order."""
        batch, self.pending = self.pending, []
        if not batch:
            return {}
        labels = tuple(p.label for p in batch)
        name = f"{self.run_id}__{labels[0]}" + (f"..{labels[-1]}" if len(labels) > 1 else "")
        names = [n for n in SUITE_NAMES if any(n in p.frames for p in batch)]
        combined = {n: pd.concat([p.frames[n] for p in batch if n in p.frames]) for n in names}
        specs = {n: self.specs[n] for n in names}
        params = checked_parameters(specs, combined, self.parameters)
        runs = self._validate(name, combined, params)
        del combined
        self.keys += [(labels, run.key) for run in runs.values()]
        rejected = [p.rejected for p in batch if not p.rejected.empty]
        if rejected:  # the bars the upkeep repaired, as the feed delivered them: docs only
            frame = {"bars_1m": pd.concat(rejected, ignore_index=True)}
            runs_rejected = validate_suites(
                f"{name}_rejected",
                frame,
                self.data_docs_dir,
                params,
                keep_results=self.keep_results,
            )
            self.keys += [(labels, run.key) for run in runs_rejected.values()]
        results: dict[str, list[SuiteResult]] = {p.label: [] for p in batch}
        for n, run in runs.items():
            batch_ok = successes_in_suite_order(specs[n], run.result.results)
            split = _split(specs[n], batch_ok, batch, n, params)
            if split is None:  # the failing rows were not found: each session on its own
                split = self._one_by_one(n, batch, params)
            override = "warning" if n == "session_quality" else None
            for p in batch:
                if n in p.frames:
                    results[p.label] += summarise(
                        specs[n], split[p.label], p.frames[n], params, override
                    )
        return results

    def _validate(
        self, name: str, frames: Mapping[str, pd.DataFrame], params: Mapping[str, float]
    ) -> dict[str, SuiteRun]:
        return validate_suites(
            name,
            frames,
            self.data_docs_dir,
            params,
            keep_results=self.keep_results,
            result_format=BATCH_RESULT_FORMAT,
        )

    def _one_by_one(
        self, suite: str, batch: list[PendingSession], params: Mapping[str, float]
    ) -> dict[str, list[bool]]:
        split = {}
        for p in batch:
            if suite in p.frames:
                name = f"{self.run_id}__{p.label}_{suite}"
                (run,) = self._validate(name, {suite: p.frames[suite]}, params).values()
                split[p.label] = successes_in_suite_order(self.specs[suite], run.result.results)
        return split

    def publish(self) -> dict[str, Path]:
        """Build the Data Docs of every batch once; each session's page (its batch's 1m bars)."""
        if not self.keys:
            return {}
        keys = [k for _, k in self.keys]
        legend = docs_legend(self.parameters)
        pages, _ = build_docs(self.data_docs_dir, keys, self.keep_results, legend)
        by_session: dict[str, Path] = {}
        for (labels, _), page in zip(self.keys, pages, strict=True):
            for label in labels:  # a batch's first page is its 1m bars' when it has any
                by_session.setdefault(label, page)
        return by_session


def _split(
    spec: Mapping[str, Any],
    batch_ok: list[bool],
    batch: list[PendingSession],
    suite: str,
    params: Mapping[str, float],
) -> dict[str, list[bool]] | None:
    """Each session's per-expectation successes, or None when a failure cannot be located."""
    split = {p.label: list(batch_ok) for p in batch if suite in p.frames}
    for i, (expectation, ok) in enumerate(zip(spec["expectations"], batch_ok, strict=True)):
        if ok:
            continue
        located = False
        for p in batch:
            if suite not in p.frames:
                continue
            mask = row_failures(expectation, p.frames[suite], params)
            if mask is None:
                return None
            failed = bool(mask.any())
            split[p.label][i] = not failed
            located = located or failed
        if not located:
            return None
    return split
