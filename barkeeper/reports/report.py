"""A run's results as the JSON contract of DESIGN.md and as terminal tables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from barkeeper.core.vocabulary import LEGEND, threshold_legend
from barkeeper.live.session_results import symbol_figures
from barkeeper.settings import load_settings
from models.results import read_table, resolve_run
from models.tables import Gap, SessionMetric, ValidationResult


def run_report(engine: Engine, run_id: str | None = None) -> dict[str, Any]:
    """`{"run_id", "status", "data_docs", "sessions": [{"date", "symbols": {SYM: {...}}}]}`.

    Symbols carry the contract's figures for regular hours; with extended hours, the pre- and
    post-market figures sit under `segments`.
    """
    run = resolve_run(engine, run_id)
    metrics = read_table(engine, SessionMetric, run.id).sort_values(["session", "symbol"])
    sessions = []
    for session, frame in metrics.groupby("session", sort=True):
        symbols: dict[str, dict[str, Any]] = {}
        for row in frame.itertuples(index=False):
            figures = symbol_figures(row)
            if row.segment == "regular":
                symbols.setdefault(row.symbol, {}).update(figures)
            else:
                symbols.setdefault(row.symbol, {}).setdefault("segments", {})[row.segment] = figures
        sessions.append({"date": str(session), "symbols": symbols})
    return {
        "run_id": run.id,
        "status": run.status,
        "data_docs": run.data_docs,
        "quality_threshold": json.loads(run.parameters or "{}").get("quality_threshold")
        or load_settings().quality_threshold,
        "sessions": sessions,
    }


def replay_report(engine: Engine, summary: Mapping[str, Any]) -> dict[str, Any]:
    """A finished replay's report: its figures read back from the store, with what its flow
    returned (status, Data Docs, timings, a feed file's counts)."""
    return {**run_report(engine, summary["run_id"]), **summary}


def fanout_report(engine: Engine, result: Mapping[str, Any]) -> dict[str, Any]:
    """A fanned-out replay's report: each session's figures from the run that replayed it."""
    figures = {}
    for run_id in result["run_ids"]:
        for session in run_report(engine, run_id)["sessions"]:
            figures[run_id, session["date"]] = session["symbols"]
    sessions = [
        {**s, "symbols": figures.get((s["run_id"], s["date"]), {})} for s in result["sessions"]
    ]
    return {
        "run_id": ",".join(result["run_ids"]),
        "run_ids": result["run_ids"],
        "status": "completed",
        "data_docs": "",
        "sessions": sessions,
    }


def failed_expectations(engine: Engine, run_id: str) -> pd.DataFrame:
    """Validation results that did not succeed, final ones first."""
    results = read_table(engine, ValidationResult, run_id)
    failed = results.loc[~results["success"].astype(bool)]
    return failed.sort_values(["stage", "session", "suite"], ascending=[False, True, True])


def gaps_of(engine: Engine, run_id: str) -> pd.DataFrame:
    return read_table(engine, Gap, run_id)


def render(report: dict[str, Any], console: Console) -> None:
    """One table of every session's per-symbol figures, its legend and any no-data symbols.

    With extended hours, each symbol's pre- and post-market segments get rows of their own.
    """
    console.print(f"run {report['run_id']} ({report['status']})")
    if report["data_docs"]:
        console.print(f"Data Docs: {report['data_docs']}", soft_wrap=True)
    table = Table(title_justify="left")
    headers = (
        "session",
        "symbol",
        "quality %",
        "complete %",
        "actual/exp",
        "gaps",
        "backfill",
        "repair",
        "no-trade",
        "unfill",
        "valid",
    )
    for i, name in enumerate(headers):
        table.add_column(name, justify="left" if i < 2 else "right", no_wrap=True)
    for session in report["sessions"]:
        for symbol, m in session["symbols"].items():
            table.add_row(session["date"], symbol, *_figures(m))
            for segment, figures in m.get("segments", {}).items():
                table.add_row(session["date"], f"{symbol} ({segment})", *_figures(figures))
    console.print(table)
    for session in report["sessions"]:  # several sources: where the bars came from
        for symbol, m in session["symbols"].items():
            sources = m.get("sources") or {}
            if len(sources) > 1 or m.get("discrepancies"):
                by_source = ", ".join(f"{name} {n}" for name, n in sources.items())
                console.print(
                    f"{session['date']} {symbol}: bars by source {by_source}; "
                    f"feed gaps {m.get('feed_gaps')}; discrepancies {m.get('discrepancies')}"
                )
    console.print(f"{LEGEND}; {threshold_legend(report.get('quality_threshold'))}", soft_wrap=True)


def _figures(m: dict[str, Any]) -> tuple[str, ...]:
    quality, complete = m.get("bar_quality"), m.get("completeness")
    return (
        "" if quality is None else f"{quality:.1f}",
        "" if complete is None else f"{complete:.1f}",
        f"{m.get('actual_bars')}/{m.get('expected_bars')}",
        str(m.get("gaps")),
        str(m.get("backfilled_bars")),
        str(m.get("repaired_bars")),
        str(m.get("no_trade_bars")),
        str(m.get("unfillable_bars")),
        {True: "yes", False: "NO", None: "-"}[m.get("validation_success")],
    )


def no_data_symbols(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(session, symbol) pairs with no bar in any source for the whole session."""
    return [
        (session["date"], symbol)
        for session in report["sessions"]
        for symbol, m in session["symbols"].items()
        if m.get("no_data")
    ]


def failure_lines(failed: pd.DataFrame, limit: int = 20) -> list[str]:
    """One line per failed expectation result, naming the symbols of its sample rows."""
    lines = []
    for row in failed.head(limit).itertuples(index=False):
        sample = json.loads(row.unexpected_sample or "[]")
        symbols = sorted({str(r["symbol"]) for r in sample if r.get("symbol") is not None})
        who = f" symbols {', '.join(symbols)}:" if symbols else ""
        names = ", ".join(json.loads(row.failing))
        lines.append(
            f"failed: {row.stage} {row.session} {row.suite} ({row.severity}):{who} "
            f"{row.failed}/{row.evaluated} expectations failed: {names}"
        )
    return lines
