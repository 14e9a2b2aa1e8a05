"""Security: hostile symbols stay data, flow paths stay in their folders, passwords stay secret.

Oracles: the store's own schema and row counts after a hostile import and replay, the file
system after a landing folder is attacked, and a byte-for-byte search of everything a run
writes (stdout, stderr, Prefect's database with its logs and artifacts, the reports folder
with Data Docs, the run's rows) for a database password.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import SAMPLE_DIR
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel
from typer.testing import CliRunner

from barkeeper.cli.main import app
from barkeeper.errors import ParameterError
from barkeeper.ingest.files import ingest_file
from barkeeper.ingest.paths import confine
from barkeeper.params import ReplayParameters
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.schema import init_db

BARKEEPER = Path(sys.executable).with_name("barkeeper")
HOSTILE = "X'); DROP TABLE BAR;--"
MSFT = next(SAMPLE_DIR.glob("MSFT_1min_*.csv"))
SESSION = "2023-07-10"


def cli_env(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BARKEEPER_DATABASE_URL": url,
        "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_LOGGING_LEVEL": "INFO",
    }


def barkeeper(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BARKEEPER), *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_hostile_symbol_is_imported_and_replayed_as_plain_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = engine_for(url)
    init_db(engine)
    ingest_file(engine, MSFT)
    assert ReplayParameters(symbols=[HOSTILE], start=SESSION).symbols == [HOSTILE]
    result = CliRunner().invoke(app, ["import", str(MSFT), "--symbol", HOSTILE, "--json",
                                      "--db", url])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["symbol"] == HOSTILE

    replay = barkeeper(cli_env(url, tmp_path), "replay", "--symbols", HOSTILE, "--start", SESSION,
                       "--drop-rate", "0.1", "--json")  # fmt: skip
    assert replay.returncode == 0, replay.stderr[-3000:]
    figures = json.loads(replay.stdout)["sessions"][0]["symbols"]
    assert list(figures) == [HOSTILE]

    with engine.connect() as conn:  # the store is intact: every table, every bar
        assert set(SQLModel.metadata.tables) <= set(inspect(conn).get_table_names())
        counts = dict(conn.execute(text("SELECT symbol, count(*) FROM bar GROUP BY symbol")).all())
        assert counts == {"MSFT": counts["MSFT"], HOSTILE: counts["MSFT"]}
    series = run_series(engine, json.loads(replay.stdout)["run_id"])  # repository + changes
    session_bars = int(((series["symbol"] == HOSTILE) & (series["interval"] == 1)).sum())
    assert session_bars == figures[HOSTILE]["actual_bars"] > 300
    exported = CliRunner().invoke(app, ["export", "--latest", "--symbol", HOSTILE, "--date",
                                        SESSION, "--db", url])  # fmt: skip
    assert exported.exit_code == 0 and exported.stdout.count("\n") == session_bars + 1


# ---------------------------------------------------------------------------- paths
@pytest.mark.parametrize(
    "relative", ["..", "../elsewhere", "/etc", "sub/../../elsewhere", "link_out", "link_out/x"]
)
def test_flow_paths_cannot_leave_their_folder(tmp_path: Path, relative: str) -> None:
    root = tmp_path / "landing"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link_out").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ParameterError, match="points outside"):
        confine(root, relative, parameter="landing")
    assert confine(root, "sub", parameter="landing") == (root / "sub").resolve()
    assert confine(root, ".", parameter="landing") == root.resolve()


def test_nightly_audit_ingests_nothing_from_outside_its_landing_folder(
    tmp_path: Path, sqlite_url: str
) -> None:
    from prefect.logging import disable_run_logger

    from tasks.audit import ingest_landing

    root = tmp_path / "landing"
    root.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    shutil.copy(MSFT, outside / MSFT.name)
    (root / "MSFT_1min_linked.csv").symlink_to(outside / MSFT.name)
    with disable_run_logger():
        with pytest.raises(ParameterError, match="points outside"):
            ingest_landing.fn(sqlite_url, str(root), "../secret", ["*.csv"], 0)
        landed = ingest_landing.fn(sqlite_url, str(root), ".", ["*.csv"], 0)
    assert [(f.status, "outside" in f.reason) for f in landed] == [("rejected", True)]
    assert (outside / MSFT.name).exists()  # the target is left alone
    with engine_for(sqlite_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bar")).scalar_one() == 0


# ---------------------------------------------------------------------------- credentials
def test_a_database_password_is_never_written_anywhere(postgres_url: str, tmp_path: Path) -> None:
    admin = engine_for(postgres_url)
    for path in sorted(SAMPLE_DIR.glob("*_1min_*.csv")):
        ingest_file(admin, path)
    role, password = f"bk_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        for grant in ("ALL ON ALL TABLES IN SCHEMA public", "ALL ON ALL SEQUENCES IN SCHEMA public",
                      "CREATE, USAGE ON SCHEMA public"):  # fmt: skip
            conn.execute(text(f"GRANT {grant} TO {role}"))
    url = make_url(postgres_url).set(username=role, password=password)
    url = url.render_as_string(hide_password=False)
    env = cli_env(url, tmp_path)
    try:
        outputs = [
            barkeeper(env, "init"),
            barkeeper(env, "replay", "--symbols", "MSFT,DBB", "--start", SESSION, "--json",
                      "--drop-rate", "0.05", "--corrupt-rate", "0.01"),
            barkeeper(env, "replay", "--symbols", "NOPE", "--start", SESSION),  # fails: exit 2
            barkeeper(env, "report", "--json"),
            barkeeper(env, "replay", "--symbols", "MSFT", "--start", SESSION,
                      "--db", url.replace("127.0.0.1", "127.0.0.1:1")),  # unreachable: exit 2
        ]  # fmt: skip
        assert [o.returncode for o in outputs] == [0, 0, 2, 0, 2], [o.stderr for o in outputs]
        report = json.loads(outputs[3].stdout)
        assert report["status"] in ("completed", "degraded") and report["data_docs"]
        with admin.connect() as conn:
            runs = conn.execute(text("SELECT * FROM run")).all()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
    written = [o.stdout + o.stderr for o in outputs] + [repr(tuple(r)) for r in runs]
    assert not [w for w in written if password in w]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in files)  # Data Docs were written, and searched
    assert any(p.name.startswith("prefect.db") for p in files)  # so were Prefect's logs
    leaked = [p for p in files if password.encode() in p.read_bytes()]
    assert leaked == []
