"""Typed flow parameters: validated before any work starts, rendered as forms by the Prefect UI."""

from __future__ import annotations

from datetime import date
from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

SYMBOL_PATTERN = r"^[^,\x00-\x1f]{1,64}$"
SPEED_PATTERN = r"^(max|realtime|[0-9]+(\.[0-9]+)?x)$"
OUTAGE_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$"
HANDLER_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DEFAULT_SOURCE = "default"
"""The source of bars imported without `--source`, and the one every reader reads by default."""

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


def clean_symbols(value: list[str]) -> list[str]:
    """Upper-case, stripped, each symbol once, in the order given."""
    cleaned = [s.strip().upper() for s in value]
    if not all(cleaned):
        raise ValueError("symbols must not be blank")
    if max(map(len, cleaned), default=0) > 64:  # upper-casing can lengthen: ß → SS
        raise ValueError("symbols must be at most 64 characters once upper-cased")
    return list(dict.fromkeys(cleaned))


def check_order(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValueError(f"end {end} is before start {start}")


QualityThreshold = Annotated[
    float | None,
    Field(
        ge=0,
        le=100,
        title="Quality threshold (%)",
        description="bar_quality under which a symbol is flagged (default 95).",
    ),
]
CalendarName = Annotated[
    str | None, Field(title="Calendar", description="exchange_calendars name (default XNYS).")
]
SourceName = Annotated[str, Field(pattern=SOURCE_PATTERN)]
SymbolList = Annotated[
    list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]], AfterValidator(clean_symbols)
]


class FaultParameters(BaseModel):
    """A lossy feed for testing the upkeep: every fault drawn from one seed."""

    model_config = ConfigDict(extra="forbid")

    drop_rate: Rate = Field(0.0, title="Drop rate", description="Share of bars the feed loses.")
    outages: list[Annotated[str, Field(pattern=OUTAGE_PATTERN)]] = Field(
        default_factory=list,
        title="Outages",
        description="Feed outage windows, exchange local time, as HH:MM-HH:MM.",
    )
    corrupt_rate: Rate = Field(
        0.0, title="Corrupt rate", description="Share of bars delivered with inconsistent OHLC."
    )
    duplicate_rate: Rate = Field(
        0.0, title="Duplicate rate", description="Share of bars delivered twice."
    )
    out_of_order_rate: Rate = Field(
        0.0, title="Out-of-order rate", description="Share of bars delivered 1-5 minutes late."
    )
    seed: int = Field(0, ge=0, title="Seed", description="Seed of every injected fault.")

    @field_validator("outages")
    @classmethod
    def _start_before_end(cls, value: list[str]) -> list[str]:
        for window in value:
            start, end = window.split("-")
            if start >= end:
                raise ValueError(f"outage {window!r} must start before it ends")
        return value


class ReplayParameters(BaseModel):
    """What to replay and how: the form of the `replay` deployment."""

    model_config = ConfigDict(extra="forbid")

    symbols: SymbolList = Field(
        ..., min_length=1, title="Symbols", description="Symbols to replay, e.g. MSFT, DBB."
    )
    start: date = Field(..., title="Start", description="First session (exchange date).")
    end: date | None = Field(
        None, title="End", description="Last session; defaults to the start date."
    )
    speed: str = Field(
        "max",
        pattern=SPEED_PATTERN,
        title="Speed",
        description="Pacing: max (as fast as possible), realtime, or a multiplier like 1000x.",
    )
    interval_seconds: int | None = Field(
        None,
        ge=1,
        le=86_400,
        title="Upkeep interval (s)",
        description="Session-clock seconds between upkeep cycles "
        "(default DATA_UPKEEP_CHECK_INTERVAL_SECONDS).",
    )
    validation_interval_seconds: int | None = Field(
        None,
        ge=1,
        le=86_400,
        title="Validation interval (s)",
        description="Session-clock seconds between GX validations "
        "(default DATA_UPKEEP_VALIDATION_INTERVAL_SECONDS).",
    )
    derived: list[Annotated[int, Field(ge=2, le=1440)]] | None = Field(
        None,
        title="Derived intervals (min)",
        description="Derived bar sizes in minutes (default DATA_UPKEEP_DERIVED_INTERVALS).",
    )
    trailing_days: int = Field(
        0, ge=0, le=30, title="Trailing days", description="Prior sessions loaded as history."
    )
    extended_hours: bool = Field(
        False,
        title="Extended hours",
        description="Also replay pre-market (04:00-09:30 ET) and post-market (16:00-20:00 ET).",
    )
    fill_policy: Literal["none", "ffill"] = Field(
        "none",
        title="Fill policy",
        description="ffill: minutes that stay missing get flat synthetic bars (never counted).",
    )
    ffill_limit: int | None = Field(
        None,
        ge=1,
        le=1440,
        title="Fill-forward limit (min)",
        description="ffill: carry a price at most this many minutes (default: up to the "
        "session's last real bar, never past it).",
    )
    upkeep_enabled: bool | None = Field(
        None, title="Upkeep enabled", description="Default DATA_UPKEEP_ENABLED."
    )
    quality_threshold: QualityThreshold = None
    calendar: CalendarName = None
    faults: FaultParameters = Field(
        default_factory=FaultParameters, title="Fault injection", description="A lossy feed."
    )
    prefetch: bool = Field(
        True,
        title="Prefetch",
        description="Read the next session's bars while the current one replays "
        "(off: read them at the roll).",
    )
    feed: SourceName | None = Field(
        None,
        title="Feed source",
        description="Named source the coordinator streams (default: default).",
    )
    feed_file: str | None = Field(
        None,
        title="Feed file",
        description="A CSV or Parquet file streamed as the feed without importing it "
        "(instead of a feed source); its bad rows are counted in the run.",
    )
    backfill: list[SourceName] = Field(
        default_factory=lambda: [DEFAULT_SOURCE],
        min_length=1,
        title="Backfill sources",
        description="Named sources the upkeep fills and repairs from, in order.",
    )
    prefer: Literal["feed", "backfill"] = Field(
        "feed",
        title="Prefer",
        description="Which bar is kept where the feed and a backfill source differ "
        "(feed: what a strategy saw live).",
    )
    tolerance_bps: float | None = Field(
        None,
        ge=0,
        le=10_000,
        title="Price tolerance (bps)",
        description="Basis points within which two sources' prices agree "
        "(default BARKEEPER_TOLERANCE_BPS, 5).",
    )
    handlers: list[Annotated[str, Field(pattern=HANDLER_PATTERN)]] = Field(
        default_factory=list,
        title="Bar handlers",
        description="Import paths package.module:factory; each factory takes the session_data "
        "and returns a per-bar handler (optionally with on_session_start/on_session_end).",
    )

    @model_validator(mode="after")
    def _end_not_before_start(self) -> ReplayParameters:
        check_order(self.start, self.end)
        if self.feed is not None and self.feed_file:
            raise ValueError("give a feed source or a feed file, not both")
        if self.feed_file is not None and not self.feed_file.strip():
            raise ValueError("feed_file must not be blank")
        return self

    @property
    def last(self) -> date:
        return self.end or self.start

    @property
    def feed_source(self) -> str:
        """The feed's source name (a feed file's name when a file is streamed)."""
        if self.feed_file:
            return PurePath(self.feed_file).name[:255]
        return self.feed or DEFAULT_SOURCE


def split_symbols(text: str) -> list[str]:
    """ "MSFT, dbb" → ["MSFT", "DBB"] (the CLI's comma-separated form)."""
    return [s.strip() for s in text.split(",") if s.strip()]


class AuditParameters(BaseModel):
    """What the nightly audit covers: the form of the `nightly-audit` deployment."""

    model_config = ConfigDict(extra="forbid")

    landing: str = Field(
        ".",
        title="Landing folder",
        description="Folder inside BARKEEPER_LANDING_DIR whose files are ingested "
        "(. for the landing folder itself); processed files move to done/ or rejected/.",
    )
    start: date | None = Field(
        None, title="Start", description="First session to audit (default: the last session)."
    )
    end: date | None = Field(
        None, title="End", description="Last session to audit (default: the start date)."
    )
    last_sessions: int = Field(
        1,
        ge=1,
        le=60,
        title="Last sessions",
        description="Without a start date: audit this many of the latest completed sessions.",
    )
    symbols: SymbolList = Field(
        default_factory=list,
        title="Symbols",
        description="Symbols to audit (none listed: every symbol in the store).",
    )
    derived: list[Annotated[int, Field(ge=2, le=1440)]] = Field(
        default_factory=list,
        title="Derived intervals (min)",
        description="Derived bar sizes to materialise (none listed: "
        "DATA_UPKEEP_DERIVED_INTERVALS).",
    )
    quality_threshold: QualityThreshold = None
    calendar: CalendarName = None
    source: SourceName = Field(
        DEFAULT_SOURCE,
        title="Source",
        description="Named source audited; its derived bars are materialised into it.",
    )

    @model_validator(mode="after")
    def _end_not_before_start(self) -> AuditParameters:
        if self.start is None and self.end is not None:
            raise ValueError("end needs a start date (or leave both empty for the last sessions)")
        check_order(self.start, self.end)
        return self
