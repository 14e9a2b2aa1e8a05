"""Tables of the store. Every `ts` is an int64 Unix timestamp in seconds (UTC, bar start).

Integers rather than DATETIME keep bulk writes fast and identical on SQLite and PostgreSQL;
readers convert at the edge.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel

from barkeeper.params import DEFAULT_SOURCE  # re-exported: the store's default source

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def nanos(moment: datetime) -> int:
    """`moment` as epoch nanoseconds, exactly (a naive datetime is read as UTC, as SQLite
    returns them)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(microseconds=1) * 1000


class Bar(SQLModel, table=True):
    """The bar repository: vendor 1-minute bars as imported (never modified by a replay).

    Each bar belongs to a named source (a vendor, a recorder); `origin` is what delivered it
    (the file name, `derived` for materialised bars).
    """

    __tablename__ = "bar"

    symbol: str = Field(primary_key=True, max_length=64)
    interval: int = Field(default=1, primary_key=True)
    ts: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    source: str = Field(default=DEFAULT_SOURCE, primary_key=True, max_length=64)
    open: float
    high: float
    low: float
    close: float
    volume: float
    origin: str = Field(default="", max_length=255)
    # When these values were stored (epoch ns, UTC; NULL: before revision 0007). Integers like
    # `ts`: nothing to convert per row in a bulk write, and the same comparison on both stores
    # against a run's read time (`RunSession.read_at`) without timestamp formats or zones.
    stored_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class Quarantine(SQLModel, table=True):
    """A row that failed the import checks, kept with its origin and reason."""

    id: int | None = Field(default=None, primary_key=True)
    file: str = Field(max_length=1024, index=True)
    line: int
    raw: str = Field(sa_column=Column(Text, nullable=False))
    reason: str = Field(max_length=64, index=True)
    symbol: str = Field(default="", max_length=64)
    source: str = Field(default=DEFAULT_SOURCE, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    # The delivery the row came in: a new delivery under the same name keeps these rows.
    content_hash: str = Field(default="", max_length=64, index=True)
    ts: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # minute


class IngestedFile(SQLModel, table=True):
    """One import of one file, with the counts that must add up."""

    __tablename__ = "ingested_file"

    id: int | None = Field(default=None, primary_key=True)
    path: str = Field(max_length=1024, index=True)
    symbol: str = Field(default="", max_length=64)
    source: str = Field(default=DEFAULT_SOURCE, max_length=64)
    status: str = Field(default="done", max_length=16)  # done | rejected
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    read: int = 0
    stored: int = 0
    quarantined: int = 0
    skipped: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    revised: int = 0
    content_hash: str = Field(default="", max_length=64)  # sha256 of the delivered bytes
    format: str = Field(default="", max_length=255)  # the stamp format read, as reported


class BarRevision(SQLModel, table=True):
    """A bar's earlier values, kept when a later file replaced them (never overwritten)."""

    __tablename__ = "bar_revision"
    __table_args__ = (Index("ix_bar_revision_key", "symbol", "interval", "ts"),)

    id: int | None = Field(default=None, primary_key=True)
    symbol: str = Field(max_length=64)
    interval: int = 1
    ts: int = Field(sa_column=Column(BigInteger, nullable=False))
    source: str = Field(default="default", max_length=64)
    open: float
    high: float
    low: float
    close: float
    volume: float
    file: str = Field(default="", max_length=1024)  # the file these values came from
    replaced_at: datetime = Field(default_factory=utcnow)
    replaced_by: str = Field(default="", max_length=1024)  # the file that replaced them
    # When the replaced values had been stored (the bar's `stored_at`; NULL: before 0007).
    stored_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class Run(SQLModel, table=True):
    """One replay or audit: its parameters, timing and outcome."""

    id: str = Field(primary_key=True, max_length=64)
    flow: str = Field(max_length=64)
    status: str = Field(default="running", max_length=16, index=True)
    parameters: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    started_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    data_docs: str = Field(default="", max_length=1024)
    stats: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    host: str = Field(default="", max_length=255)  # where the run's process lives
    pid: int | None = None  # that process, to tell an interrupted run from a live one


class SessionMetric(SQLModel, table=True):
    """Quality figures of one symbol in one session (and segment) of a run."""

    __tablename__ = "session_metric"

    run_id: str = Field(primary_key=True, max_length=64, foreign_key="run.id")
    session: date = Field(primary_key=True)
    symbol: str = Field(primary_key=True, max_length=64)
    segment: str = Field(default="regular", primary_key=True, max_length=16)
    expected_bars: int = 0
    actual_bars: int = 0
    bar_quality: float = 0.0
    gaps: int = 0
    missing_bars: int = 0
    backfilled_bars: int = 0
    repaired_bars: int = 0
    unfillable_bars: int = 0
    no_trade_bars: int = 0
    synthetic_bars: int = 0
    outside_bars: int = 0
    feed_gaps: int = 0  # minutes the feed lacked that a backfill source had
    discrepancies: int = 0  # minutes where the feed and a backfill source disagree
    sources: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    validation_success: bool | None = None
    # Added by 0006 (figures): see barkeeper.core.vocabulary.COUNTS.
    source_bars: int = 0
    completeness: float | None = None  # unknown for runs recorded before 0006
    feed_missing_bars: int = 0
    feed_gap_runs: int = 0
    no_data: bool = False


class Gap(SQLModel, table=True):
    """A run of consecutive missing minutes of one symbol, and what became of it."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64, foreign_key="run.id", index=True)
    session: date
    symbol: str = Field(max_length=64)
    start_ts: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ts: int = Field(sa_column=Column(BigInteger, nullable=False))
    length: int
    status: str = Field(max_length=16)  # backfilled | no_trade | unfillable | partial
    retries: int = 0


class RunBar(SQLModel, table=True):
    """A bar of a run that is not the repository's bar as the run read it.

    Sessions recorded in `run_session` store only their changes: 1m bars the run ended with
    that differ from the repository's (backfilled, repaired, synthetic, or other values; NULL
    prices where only the provenance differs, the values being the repository's) and a `none`
    marker where the repository held a bar the run ended without; the rest of the series is
    rebuilt from the repository (`barkeeper.reports.rebuild`). Sessions of older runs (no
    `run_session` row) hold a full copy, derived bars included. The key leads with the session
    (every read is per run and session) and, on SQLite, is the table itself (WITHOUT ROWID).
    """

    __tablename__ = "run_bar"
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: str = Field(primary_key=True, max_length=64, foreign_key="run.id")
    session: date = Field(primary_key=True)
    symbol: str = Field(primary_key=True, max_length=64)
    interval: int = Field(primary_key=True)
    ts: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    volume: float | None = None
    provenance: str = Field(max_length=16)  # feed|backfill|repaired|synthetic|derived|none
    source: str = Field(default="", max_length=64)  # the named source of a 1m bar
    constituents: int = 1
    expected_constituents: int = 1


class RunSession(SQLModel, table=True):
    """A session of a run stored as changes against the repository, and how to rebuild it."""

    __tablename__ = "run_session"

    run_id: str = Field(primary_key=True, max_length=64, foreign_key="run.id")
    session: date = Field(primary_key=True)
    calendar: str = Field(max_length=32)
    extended_hours: bool = False
    anchor: str = Field(default="session", max_length=16)
    derived: str = Field(default="", max_length=255)  # intervals derived, e.g. "5,15,1440"
    window_start: int = Field(sa_column=Column(BigInteger, nullable=False))
    window_end: int = Field(sa_column=Column(BigInteger, nullable=False))
    bars: int = 0  # run_bar rows written for the session (changes and markers)
    # The source whose repository slice is the base ("" for a feed file: no base, every kept
    # bar is a change).
    source: str = Field(default=DEFAULT_SOURCE, max_length=64)
    # When the run had read the slice (epoch ns, UTC; NULL: before 0007, the run's start
    # stands in): the export rebuilds the slice as of then if it changed since.
    read_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class RunSource(SQLModel, table=True):
    """Fingerprint of the repository rows a run read for one symbol and session."""

    __tablename__ = "run_source"

    run_id: str = Field(primary_key=True, max_length=64, foreign_key="run.id")
    session: date = Field(primary_key=True)
    symbol: str = Field(primary_key=True, max_length=64)
    bars: int = 0  # repository rows read (the session's local day)
    digest: str = Field(max_length=32)  # blake2b-128 of (ts, OHLCV) in ts order, hex


class ValidationResult(SQLModel, table=True):
    """The outcome of one expectation suite over one batch of a run."""

    __tablename__ = "validation_result"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64, foreign_key="run.id", index=True)
    session: date | None = None
    suite: str = Field(max_length=64)
    severity: str = Field(max_length=16)  # critical | warning
    success: bool
    evaluated: int = 0
    failed: int = 0
    failing: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    unexpected_sample: str = Field(
        default="[]", sa_column=Column(Text, nullable=False, default="[]")
    )
    stage: str = Field(default="final", max_length=16)  # cycle | final
    created_at: datetime = Field(default_factory=utcnow)


class Discrepancy(SQLModel, table=True):
    """A minute where the feed and a backfill source both have a bar and they disagree."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64, foreign_key="run.id", index=True)
    session: date
    symbol: str = Field(max_length=64)
    ts: int = Field(sa_column=Column(BigInteger, nullable=False))
    kind: str = Field(max_length=16)  # price | volume (price when both)
    feed_source: str = Field(max_length=255)
    backfill_source: str = Field(max_length=64)
    kept: str = Field(max_length=16)  # feed | backfill
    feed_open: float
    feed_high: float
    feed_low: float
    feed_close: float
    feed_volume: float
    backfill_open: float
    backfill_high: float
    backfill_low: float
    backfill_close: float
    backfill_volume: float
