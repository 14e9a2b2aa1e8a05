"""A real Prefect server with barkeeper deployed, started by `scripts/serve.sh` (`make serve`).

Session-scoped, so the deployment tests and the browser tests share one server, one worker and
one finished replay run. Everything runs in one process group of its own, which teardown ends
(SIGTERM, then SIGKILL), even when a test failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.events import Event
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.settings import PREFECT_API_URL, temporary_settings

from barkeeper.ingest.files import ingest_file
from models.engine import engine_for
from models.schema import init_db

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
READY_TIMEOUT_S = 300
RUN_TIMEOUT_S = 240
REPLAY_PARAMETERS = {
    "replay": {
        "symbols": ["MSFT", "DBB"],
        "start": "2023-07-10",
        "end": "2023-07-11",
        "speed": "max",
        "derived": [5, 15],
        "faults": {"drop_rate": 0.05, "outages": ["10:00-10:10"], "seed": 7},
    }
}

INVALID_PARAMETERS = {"replay": {"symbols": ["MSFT"], "start": "2023-07-12", "end": "2023-07-10"}}
AUDIT_PARAMETERS = {"audit": {"start": "2023-07-12", "symbols": ["FXY"], "derived": [30]}}
AUDIT_GOOD_FILE = "FXY_1min_2023-07-10_to_2023-07-13.csv"
AUDIT_BAD_FILE = "FXY_1min_empty.csv"


@dataclass(frozen=True)
class Served:
    """Where the server is and what it was started with."""

    api_url: str
    ui_url: str
    home: Path
    database_url: str
    reports_dir: Path
    reports_url: str
    landing_dir: Path
    started_s: float

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        """A Prefect client of this server (not of the test harness or the user's profile)."""
        with (
            temporary_settings({PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            yield client

    def deployment_id(self, name: str) -> Any:
        with self.client() as client:
            return client.read_deployment_by_name(name).id

    def start(self, deployment: str, parameters: dict[str, Any]) -> UUID:
        """Create a run the way the UI's Custom run does; return its id."""
        deployment_id = self.deployment_id(deployment)
        with self.client() as client:
            return client.create_flow_run_from_deployment(deployment_id, parameters=parameters).id

    def wait(self, run_id: UUID) -> FlowRun:
        """The run, once it is in a final state."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        with self.client() as client:
            while time.monotonic() < deadline:
                run = client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    return run
                time.sleep(0.5)
        pytest.fail(f"run {run_id} not final after {RUN_TIMEOUT_S} s:\n{self.logs()}")

    def events(
        self, name: str, where: Callable[[Event], bool], count: int = 1, timeout_s: float = 60
    ) -> list[Event]:
        """The server's events called `name` for which `where` holds (newest first), once there
        are `count` of them or after `timeout_s` (events are stored a moment after they arrive)."""
        deadline = time.monotonic() + timeout_s
        query = EventFilter(event=EventNameFilter(name=[name]))
        while True:
            with self.client() as client:
                found = [e for e in client.read_events(filter=query, limit=50).events if where(e)]
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(1.0)

    def barkeeper(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run the `barkeeper` command against this server; its stdout (fails on exit != 0)."""
        done = subprocess.run(
            [str(Path(sys.executable).parent / "barkeeper"), *args],
            env={**os.environ, "PREFECT_API_URL": self.api_url, **(env or {})},
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert done.returncode == 0, f"barkeeper {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def logs(self, lines: int = 40) -> str:
        parts = []
        for name in ("serve.out", "server.log", "deploy.log", "worker.log"):
            path = self.home / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def checkout_copy(destination: Path) -> Path:
    """A copy of this checkout's files (tracked, and new ones not ignored) at `destination`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def seeded_store(folder: Path) -> str:
    """A SQLite store holding the bundled sample, imported as a user would."""
    url = f"sqlite:///{folder / 'barkeeper.db'}"
    engine = engine_for(url)
    init_db(engine)
    samples = sorted(SAMPLE.glob("*.csv"))
    if not samples:
        pytest.fail(f"no sample CSV under {SAMPLE}")
    for path in samples:
        ingest_file(engine, path)
    return url


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`scripts/serve.sh` on a free port with a temporary home and a seeded store."""
    root = tmp_path_factory.mktemp("served")
    home = root / "prefect"
    home.mkdir()
    port, reports_port = free_port(), free_port()
    database_url = seeded_store(root)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PORT": str(port),
        "REPORTS_PORT": str(reports_port),
        "PREFECT_HOME": str(home),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "BARKEEPER_DATABASE_URL": database_url,
        "BARKEEPER_REPORTS_DIR": str(root / "reports"),
        "BARKEEPER_LANDING_DIR": str(root / "landing"),
        "BARKEEPER_LANDING_SETTLE_SECONDS": "0",  # the test's files are complete when written
        "BARKEEPER_SERVE_READY": str(home / "ready"),
    }
    began = time.monotonic()
    with (home / "serve.out").open("wb") as out:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "serve.sh")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    info = Served(
        api_url=f"http://127.0.0.1:{port}/api",
        ui_url=f"http://127.0.0.1:{port}",
        home=home,
        database_url=database_url,
        reports_dir=root / "reports",
        reports_url=f"http://127.0.0.1:{reports_port}",
        landing_dir=root / "landing",
        started_s=0.0,
    )
    try:
        while not (home / "ready").exists():
            if process.poll() is not None:
                pytest.fail(f"serve.sh exited with {process.returncode}:\n{info.logs()}")
            if time.monotonic() - began > READY_TIMEOUT_S:
                pytest.fail(f"serve.sh not ready after {READY_TIMEOUT_S} s:\n{info.logs()}")
            time.sleep(0.25)
        yield Served(**{**vars(info), "started_s": time.monotonic() - began})
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """Stop serve.sh as Ctrl-C would (its trap stops the worker, then the server); then make
    sure: SIGKILL to whatever is left of its process group."""
    process.send_signal(signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def started_runs(served: Served) -> dict[str, UUID]:
    """The runs the server and browser tests look at, created at once so their start-ups overlap.

    `replay`: custom parameters on the sample; `invalid`: end before start; `audit`: the nightly
    audit on a landing folder with a good and an unreadable file.
    """
    served.landing_dir.mkdir(exist_ok=True)
    shutil.copy(SAMPLE / AUDIT_GOOD_FILE, served.landing_dir)
    (served.landing_dir / AUDIT_BAD_FILE).write_text("")
    return {
        "replay": served.start("replay_sessions/replay", REPLAY_PARAMETERS),
        "invalid": served.start("replay_sessions/replay", INVALID_PARAMETERS),
        "audit": served.start("nightly_audit/nightly-audit", AUDIT_PARAMETERS),
    }


@pytest.fixture(scope="session")
def replay_run(served: Served, started_runs: dict[str, UUID]) -> FlowRun:
    """The finished run of the `replay` deployment with custom parameters."""
    return served.wait(started_runs["replay"])
