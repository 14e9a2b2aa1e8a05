"""Typed settings from the environment or `.env`: the seed's six plus barkeeper's own."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from barkeeper.errors import ParameterError

DEFAULT_DERIVED_INTERVALS = (5, 15, 30, 60)
DEFAULT_LANDING_PATTERNS = ("*.csv", "*.csv.gz", "*.parquet", "*.zip")


def default_database_url() -> str:
    """A SQLite file in the working directory."""
    return f"sqlite:///{Path.cwd() / 'barkeeper.db'}"


class Settings(BaseSettings):
    """Everything configurable, validated once at start-up."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = Field(
        default_factory=default_database_url,
        validation_alias=AliasChoices("BARKEEPER_DATABASE_URL", "database_url"),
        description="SQLAlchemy URL of the store.",
    )
    database_block: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BARKEEPER_DATABASE_BLOCK", "database_block"),
        description="Prefect Secret block holding the store URL (wins over database_url).",
    )
    calendar: str = Field(
        default="XNYS",
        validation_alias=AliasChoices("BARKEEPER_CALENDAR", "calendar"),
        description="exchange_calendars name of the exchange whose sessions are replayed.",
    )
    reports_dir: Path = Field(
        default=Path("barkeeper_reports"),
        validation_alias=AliasChoices("BARKEEPER_REPORTS_DIR", "reports_dir"),
        description="Folder for Data Docs, charts and other generated reports.",
    )
    reports_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BARKEEPER_REPORTS_URL", "reports_url"),
        description="http:// address the reports folder is served at (artifacts link there).",
    )
    landing_dir: Path = Field(
        default=Path("landing"),
        validation_alias=AliasChoices("BARKEEPER_LANDING_DIR", "landing_dir"),
        description="Folder the nightly audit ingests vendor files from.",
    )
    landing_patterns: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_LANDING_PATTERNS,
        validation_alias=AliasChoices("BARKEEPER_LANDING_PATTERNS", "landing_patterns"),
        description="File name patterns the audit takes from the landing folder (comma-separated).",
    )
    landing_settle_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        validation_alias=AliasChoices("BARKEEPER_LANDING_SETTLE_SECONDS", "landing_settle_seconds"),
        description="A landed file is taken once unchanged (size, modification time) this long.",
    )
    quality_threshold: float = Field(
        default=95.0,
        ge=0,
        le=100,
        validation_alias=AliasChoices("BARKEEPER_QUALITY_THRESHOLD", "quality_threshold"),
        description="bar_quality (%) under which a session is flagged.",
    )
    store_busy_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3_600,
        validation_alias=AliasChoices("BARKEEPER_STORE_BUSY_TIMEOUT", "store_busy_timeout_seconds"),
        description="How long a command waits for a SQLite store locked by another one.",
    )
    max_price: float = Field(
        default=1e7,
        gt=0,
        validation_alias=AliasChoices("BARKEEPER_MAX_PRICE", "max_price"),
        description="Prices at or above this are quarantined as implausible_value.",
    )
    max_volume: float = Field(
        default=1e12,
        gt=0,
        validation_alias=AliasChoices("BARKEEPER_MAX_VOLUME", "max_volume"),
        description="Volumes at or above this are quarantined as implausible_value.",
    )

    verify_exports: bool = Field(
        default=False,
        validation_alias=AliasChoices("BARKEEPER_VERIFY_EXPORTS", "verify_exports"),
        description="After persisting a session, rebuild its series from the store and check "
        "that it equals the in-memory full copy (for tests; costs a repository read).",
    )
    tolerance_bps: float = Field(
        default=5.0,
        ge=0,
        validation_alias=AliasChoices("BARKEEPER_TOLERANCE_BPS", "tolerance_bps"),
        description="Basis points within which a feed and a backfill source's prices agree.",
    )
    volume_tolerance: float = Field(
        default=0.10,
        ge=0,
        validation_alias=AliasChoices("BARKEEPER_VOLUME_TOLERANCE", "volume_tolerance"),
        description="Share of the larger volume within which two sources' volumes agree.",
    )

    data_upkeep_enabled: bool = True
    data_upkeep_check_interval_seconds: int = Field(default=60, ge=1, le=86_400)
    data_upkeep_retry_missing_bars: bool = True
    data_upkeep_max_retries: int = Field(default=5, ge=0, le=100)
    data_upkeep_derived_intervals: Annotated[tuple[int, ...], NoDecode] = DEFAULT_DERIVED_INTERVALS
    data_upkeep_auto_compute_derived: bool = True
    data_upkeep_validation_interval_seconds: int = Field(default=900, ge=1, le=86_400)

    @field_validator("landing_patterns", mode="before")
    @classmethod
    def _parse_patterns(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("data_upkeep_derived_intervals", mode="before")
    @classmethod
    def _parse_intervals(cls, value: object) -> object:
        return parse_intervals(value) if isinstance(value, str) else value

    @field_validator("data_upkeep_derived_intervals")
    @classmethod
    def _check_intervals(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 2 for n in value):
            raise ValueError("derived intervals are whole minutes of 2 or more, e.g. 5,15,30,60")
        return tuple(sorted(set(value)))


def parse_intervals(text: str) -> tuple[int, ...]:
    """Parse "5,15,30" (or "[5, 15]") into whole minutes."""
    parts = [p.strip() for p in text.strip().strip("[]").split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError("derived intervals must be whole minutes like 5,15,30,60") from None


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `.env`, overridden by CLI flags or flow parameters."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        variable = name.upper() if name.startswith("data_upkeep") else name
        message = first["msg"].removeprefix("Value error, ")
        raise ParameterError(f"setting {variable}: {message} (got {first['input']!r})") from None


@contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (settings are read from them), then restore."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
