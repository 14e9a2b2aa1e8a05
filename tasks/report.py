"""Task `publish_report`: the run's Prefect artifacts (one quality table, the summary), once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from barkeeper.core.vocabulary import COUNTS, LEGEND, threshold_legend
from barkeeper.live.replay import Replay, live
from barkeeper.reports.charts import CHART_LEGEND, coverage_chart, png_data_uri
from barkeeper.reports.links import ReportsSite
from barkeeper.reports.report import failed_expectations, gaps_of, run_report
from models.engine import engine_for
from models.results import write_validation_success
from models.sources import read_discrepancies

CHARTED_SESSIONS = 5
LISTED_DISCREPANCIES = 100


def _sources_markdown(
    replay: Replay, report: dict[str, Any], discrepancies: pd.DataFrame
) -> list[str]:
    """The feed, the backfill sources, what each symbol's bars came from and each minute
    where the feed and a backfill source disagreed."""
    plan = replay.plan
    lines = [
        "## Sources",
        "",
        f"Feed `{plan.feed}`, backfill {', '.join(f'`{s}`' for s in plan.backfill)}.",
        "",
    ]
    if replay.feed_file:
        f = replay.feed_file
        lines += [
            f"Feed file `{f['path']}`: read {f['read']}, bars {f['bars']}, "
            f"quarantined {f['quarantined']} {f['reasons'] or ''}, skipped {f['skipped']}.",
            "",
        ]
    lines += [
        "| session | symbol | bars by source | feed gaps | discrepancies |",
        "|---|---|---|---|---|",
    ]
    for session in report["sessions"]:
        for symbol, m in list(session["symbols"].items())[:50]:
            by_source = ", ".join(f"{k} {v}" for k, v in (m.get("sources") or {}).items())
            lines.append(
                f"| {session['date']} | {symbol} | {by_source} | {m.get('feed_gaps')} | "
                f"{m.get('discrepancies')} |"
            )
    lines += ["", "## Discrepancies", ""]
    if discrepancies.empty:
        return [*lines, "None.", ""]
    lines += [
        "| session | symbol | minute (UTC) | class | feed OHLCV | backfill OHLCV | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in discrepancies.head(LISTED_DISCREPANCIES).itertuples(index=False):
        minute = pd.Timestamp(int(row.ts), unit="s").strftime("%Y-%m-%d %H:%M")
        feed = " ".join(
            f"{getattr(row, 'feed_' + c):g}" for c in ("open", "high", "low", "close", "volume")
        )
        back = " ".join(
            f"{getattr(row, 'backfill_' + c):g}" for c in ("open", "high", "low", "close", "volume")
        )
        lines.append(
            f"| {row.session} | {row.symbol} | {minute} | {row.kind} | {feed} | "
            f"{back} ({row.backfill_source}) | {row.kept} |"
        )
    if len(discrepancies) > LISTED_DISCREPANCIES:
        lines.append(f"\n{len(discrepancies) - LISTED_DISCREPANCIES} more in the store.")
    return [*lines, ""]


def _summary_markdown(
    replay: Replay,
    report: dict[str, Any],
    failed: pd.DataFrame,
    gaps: pd.DataFrame,
    discrepancies: pd.DataFrame,
) -> str:
    plan = replay.plan
    lines = [
        f"# Replay {plan.run_id}",
        "",
        f"{len(plan.symbols)} symbols, sessions {plan.sessions[0]} to {plan.sessions[-1]}, "
        f"speed {plan.speed}, upkeep {'on' if plan.upkeep_enabled else 'off'}.",
        "",
    ]
    if replay.data_docs:
        site = ReportsSite(Path(plan.reports_dir), plan.reports_url)
        firsts: dict[str, Any] = {}
        for session, page in replay.data_docs.items():
            firsts.setdefault(page, session)
        links = ", ".join(site.markdown(str(s), page) for page, s in firsts.items())
        lines += [f"**Data Docs** (per batch of sessions): {links}", ""]
    lines += [
        "## Quality",
        "",
        f"*{LEGEND}; {threshold_legend(plan.quality_threshold)}.*",
        "",
        "| session | symbol | quality % | completeness % | gaps | backfilled | repaired "
        "| no-trade | unfillable | no data | valid |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for session in report["sessions"]:
        for symbol, m in list(session["symbols"].items())[:50]:
            lines.append(
                f"| {session['date']} | {symbol} | {m['bar_quality']:.2f} | "
                f"{m['completeness']:.2f} | {m['gaps']} | "
                f"{m['backfilled_bars']} | {m['repaired_bars']} | {m['no_trade_bars']} | "
                f"{m['unfillable_bars']} | {'NO DATA' if m['no_data'] else ''} | "
                f"{m['validation_success']} |"
            )
    lines += ["", *_sources_markdown(replay, report, discrepancies)]
    lines += [
        "",
        "## Feed gaps",
        "",
        f"*feed_gap_runs: {COUNTS['feed_gap_runs']}, by what became of them.*",
    ]
    lines += [""]
    if gaps.empty:
        lines.append("No feed gaps.")
    else:
        counts = gaps.groupby("status")["length"].agg(["count", "sum"])
        lines += ["| status | gaps | minutes |", "|---|---|---|"]
        lines += [f"| {s} | {r['count']} | {r['sum']} |" for s, r in counts.iterrows()]
    lines += ["", "## Failed expectations", ""]
    if failed.empty:
        lines.append("None.")
    else:
        lines += [
            "| stage | session | suite | severity | failed | expectations |",
            "|---|---|---|---|---|---|",
        ]
        for row in failed.head(30).itertuples(index=False):
            lines.append(
                f"| {row.stage} | {row.session} | {row.suite} | {row.severity} | "
                f"{row.failed}/{row.evaluated} | {row.failing} |"
            )
    lines += ["", "## Coverage", "", f"*{CHART_LEGEND}*", ""]
    for session, (minutes, provenance) in list(replay.coverage.items())[:CHARTED_SESSIONS]:
        png = coverage_chart(
            minutes,
            provenance,
            plan.symbols,
            f"{session} · {plan.run_id[:8]}",
            tz=str(replay.calendar.tz),
        )
        lines += [f"![coverage {session}]({png_data_uri(png)})", ""]
    return "\n".join(lines)


def _flat(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k != "segments"}


@task(cache_policy=NONE)
def publish_report(run_id: str) -> dict[str, Any]:
    """Publish the run's quality table (a row per session and symbol) and its summary."""
    replay = live(run_id)
    engine = engine_for(replay.plan.database_url)
    data_docs = next(reversed(replay.data_docs.values()), "")
    write_validation_success(engine, run_id, replay.symbol_success)
    report = run_report(engine, run_id)
    report["data_docs"] = data_docs
    if replay.feed_file:
        report["feed_file"] = replay.feed_file
    failed = failed_expectations(engine, run_id)
    gaps = gaps_of(engine, run_id)
    rows = [
        {"session": session["date"], "symbol": symbol, **_flat(figures)}
        for session in report["sessions"]
        for symbol, figures in session["symbols"].items()
    ]
    create_table_artifact(
        key="barkeeper-quality",
        table=rows,
        description=f"Per-symbol figures, a row per session and symbol (run {run_id}). "
        f"{LEGEND}; {threshold_legend(replay.plan.quality_threshold)}.",
    )
    create_markdown_artifact(
        key="barkeeper-replay-summary",
        markdown=_summary_markdown(
            replay, report, failed, gaps, read_discrepancies(engine, run_id)
        ),
        description=f"Replay {run_id}: quality, gaps, failed expectations, coverage",
    )
    stats = replay.upkeep.stats if replay.upkeep is not None else None
    unfillable = any(
        m["unfillable_bars"] for s in report["sessions"] for m in s["symbols"].values()
    )
    degraded = bool(unfillable or (stats and (stats.fetch_errors or stats.cycle_errors)))
    get_run_logger().info("report published; degraded=%s", degraded)
    feed_file = {"feed_file": replay.feed_file} if replay.feed_file else {}
    return {"data_docs": data_docs, "degraded": degraded, **feed_file}
