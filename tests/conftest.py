"""Shared fixtures: real SQLite files, a real PostgreSQL server, the real sample data."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from served import replay_run, served, started_runs  # noqa: F401  (one real Prefect server)
from sqlalchemy import create_engine, text

from models.engine import engine_for
from models.schema import init_db

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
REAL_DIR = Path(
    os.environ.get("BARKEEPER_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "real")
)
TEST_DATA = REPO_ROOT / "tests" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Every replay in the test session (in process or in a subprocess) rebuilds each persisted
# session from the store and checks it equals the in-memory full copy.
os.environ["BARKEEPER_VERIFY_EXPORTS"] = "1"


def need(condition: bool, reason: str) -> None:
    """Skip with a visible reason on a developer machine; fail in CI, where it must be there."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file of its own."""
    url = f"sqlite:///{tmp_path / 'barkeeper.db'}"
    init_db(engine_for(url))
    return url


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the real PostgreSQL server named by the environment, dropped
    after (skipped without one, failed in CI)."""
    admin_url = os.environ.get("BARKEEPER_TEST_POSTGRES_URL", "")
    need(bool(admin_url), "BARKEEPER_TEST_POSTGRES_URL is not set (no PostgreSQL server)")
    name = f"bk_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, migrated database on the real PostgreSQL server named by the environment."""
    with fresh_postgres_database() as url:
        init_db(engine_for(url))
        yield url


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Headless Chromium as root on a machine with no outside network (no background traffic)."""


@pytest.fixture
def sample_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], str]:
    """Load the bundled real sample into a store and point this process's settings at it."""

    def load(url: str) -> str:
        from barkeeper.ingest.files import ingest_file

        engine = engine_for(url)
        for path in sorted(SAMPLE_DIR.glob("*_1min_*.csv")):
            ingest_file(engine, path)
        monkeypatch.setenv("BARKEEPER_DATABASE_URL", url)
        monkeypatch.setenv("BARKEEPER_REPORTS_DIR", str(tmp_path / "reports"))
        return url

    return load


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test against both stores."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
def real_dir() -> Path:
    need(REAL_DIR.is_dir(), f"real vendor data not found at {REAL_DIR}")
    return REAL_DIR


@pytest.fixture(scope="session")
def harness() -> Iterator[None]:
    """One temporary Prefect API for the whole test session.

    Prefect's client-side event worker binds to the first API it talks to, so a second
    harness in the same process would lose the task-run events of its runs.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
