"""What an audit tells people: the JSON document, the quality table and the markdown summary.

Pure formatting of `barkeeper.reports.audit` results; the tasks publish them as Prefect artifacts
and the command line prints them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from barkeeper.core.vocabulary import LEGEND, threshold_legend
from barkeeper.live.session_results import symbol_figures
from barkeeper.reports.audit import LandedFile, SessionAudit, SessionCheck
from barkeeper.reports.charts import png_data_uri
from barkeeper.reports.links import ReportsSite

MAX_LISTED = 25
"""Rows of a markdown list before it says "and N more" (artifacts stay readable at 2,000)."""


def _regular(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[metrics["segment"] == "regular"] if "segment" in metrics else metrics


def audit_document(
    run_id: str,
    data_docs: str,
    audits: Sequence[SessionAudit],
    checks: Sequence[SessionCheck],
    landed: Sequence[LandedFile],
) -> dict[str, Any]:
    """The `--json` document: DESIGN.md's run contract plus the audit's `files`."""
    sessions = []
    for audit, check in zip(audits, checks, strict=True):
        metrics = check.with_validation(_regular(audit.metrics))
        symbols = {}
        for row in metrics.itertuples(index=False):
            symbols[str(row.symbol)] = symbol_figures(row)
        sessions.append({"date": audit.session.isoformat(), "symbols": symbols})
    return {
        "run_id": run_id,
        "data_docs": data_docs,
        "sessions": sessions,
        "files": [vars(item).copy() for item in landed],
    }


def quality_rows(
    audits: Sequence[SessionAudit], checks: Sequence[SessionCheck], threshold: float
) -> list[dict[str, Any]]:
    """One row per session and symbol for the keyed table artifact (quality history)."""
    rows: list[dict[str, Any]] = []
    for audit, check in zip(audits, checks, strict=True):
        metrics = check.with_validation(_regular(audit.metrics))
        for row in metrics.itertuples(index=False):
            rows.append(
                {
                    "session": audit.session.isoformat(),
                    "symbol": str(row.symbol),
                    "expected_bars": int(row.expected_bars),
                    "actual_bars": int(row.actual_bars),
                    "bar_quality": round(float(row.bar_quality), 2),
                    "completeness": round(float(row.completeness), 2),
                    "gaps": int(row.gaps),
                    "missing_bars": int(row.missing_bars),
                    "outside_bars": int(row.outside_bars),
                    "no_data": bool(row.no_data),
                    "below_threshold": bool(row.completeness < threshold),
                    "validation_success": bool(row.validation_success),
                }
            )
    return rows


def summary_markdown(
    run_id: str,
    audits: Sequence[SessionAudit],
    checks: Sequence[SessionCheck],
    landed: Sequence[LandedFile],
    charts: Mapping[date, bytes],
    threshold: float,
    site: ReportsSite,
) -> str:
    """The markdown summary: sessions, weak symbols, failed rules, files, Data Docs, charts."""
    days = [a.session.isoformat() for a in audits]
    span = days[0] if len(days) == 1 else f"{days[0]} … {days[-1]}" if days else "no session"
    n_symbols = len(audits[0].panel.symbols) if audits else 0
    done = sum(f.status == "done" for f in landed)
    rejected = [f for f in landed if f.status == "rejected"]
    lines = [
        f"# Nightly audit · {span}",
        "",
        f"Run `{run_id}`: {n_symbols} symbols, {len(audits)} session(s); "
        f"{done} file(s) ingested, {len(rejected)} rejected.",
        "",
    ]
    lines += [f"*{LEGEND}; {threshold_legend(threshold)}.*", ""]
    lines += _data_docs_lines(audits, checks, site)
    lines += _sessions_table(audits, checks, threshold)
    for session, png in charts.items():
        lines += [
            f"## Coverage {session.isoformat()}",
            "",
            f"![Coverage of {session.isoformat()}]({png_data_uri(png)})",
            "",
        ]
    lines += _weak_symbols(audits, threshold)
    lines += _failed_rules(checks)
    lines += _files_table(landed)
    return "\n".join(lines)


def verdict(audit: SessionAudit, check: SessionCheck) -> str:
    """passed / failed, or `no data` when no symbol has a single bar in the session."""
    metrics = _regular(audit.metrics)
    if len(metrics) and metrics["no_data"].all():
        return "no data"
    return "passed" if check.success else "failed"


def _data_docs_lines(
    audits: Sequence[SessionAudit], checks: Sequence[SessionCheck], site: ReportsSite
) -> list[str]:
    if not checks:
        return []
    lines = ["## Data Docs", ""]
    for audit, check in zip(audits, checks, strict=True):
        status = verdict(audit, check)
        status = status if status == "passed" else f"**{status}**"
        page = Path(check.page)
        lines.append(f"- {check.session.isoformat()}: {status} · {site.markdown(page.name, page)}")
    lines += ["", site.markdown("Index", checks[-1].index), ""]
    return lines


def _sessions_table(
    audits: Sequence[SessionAudit], checks: Sequence[SessionCheck], threshold: float
) -> list[str]:
    lines = [
        "## Sessions",
        "",
        "| session | expected per symbol | actual bars | quality min / mean (%) | gaps "
        f"| no data | completeness below {threshold:g} % | validation |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for audit, check in zip(audits, checks, strict=True):
        m = _regular(audit.metrics)
        quality = m["bar_quality"]
        lines.append(
            f"| {audit.session.isoformat()} | {int(m['expected_bars'].max()) if len(m) else 0} "
            f"| {int(m['actual_bars'].sum()):,} | {quality.min():.2f} / {quality.mean():.2f} "
            f"| {int(m['gaps'].sum()):,} | {int(m['no_data'].sum())} "
            f"| {int((m['completeness'] < threshold).sum())} | {verdict(audit, check)} |"
        )
    return [*lines, ""]


def _weak_symbols(audits: Sequence[SessionAudit], threshold: float) -> list[str]:
    frames = [
        _regular(a.metrics).assign(session=a.session.isoformat()) for a in audits if len(a.metrics)
    ]
    if not frames:
        return []
    metrics = pd.concat(frames, ignore_index=True)
    weak = metrics[metrics["bar_quality"] < threshold].sort_values("bar_quality")
    if weak.empty:
        return [f"Every symbol's bar_quality is at or above {threshold:g} % in every session.", ""]
    lines = [
        f"## bar_quality below {threshold:g} %",
        "",
        "Calendar minutes without a bar in the repository: illiquid symbols land here without "
        "anything lost.",
        "",
        "| session | symbol | bar_quality | missing | gaps |",
        "|---|---|---:|---:|---:|",
    ]
    for row in weak.head(MAX_LISTED).itertuples(index=False):
        lines.append(
            f"| {row.session} | {row.symbol} | {row.bar_quality:.2f} "
            f"| {int(row.missing_bars)} | {int(row.gaps)} |"
        )
    if len(weak) > MAX_LISTED:
        lines.append(f"\n… and {len(weak) - MAX_LISTED} more (see the quality table).")
    return [*lines, ""]


def _failed_rules(checks: Sequence[SessionCheck]) -> list[str]:
    failed = [(c.session, r) for c in checks for r in c.results if not r.success]
    if not failed:
        return ["Every expectation passed.", ""] if checks else []
    lines = [
        "## Failed expectations",
        "",
        "| session | suite | severity | expectations |",
        "|---|---|---|---|",
    ]
    for session, result in failed:
        names = ", ".join(result.failing)
        lines.append(f"| {session.isoformat()} | {result.suite} | {result.severity} | {names} |")
    return [*lines, ""]


def _files_table(landed: Sequence[LandedFile]) -> list[str]:
    if not landed:
        return ["## Landing folder", "", "No file was waiting.", ""]
    lines = [
        "## Landing folder",
        "",
        "| file | status | symbol | stored | quarantined | skipped | reason |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for f in landed:
        reason = f.reason.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {f.name} | {f.status} | {f.symbol} | {f.stored} | {f.quarantined} "
            f"| {f.skipped} | {reason} |"
        )
    return [*lines, ""]
