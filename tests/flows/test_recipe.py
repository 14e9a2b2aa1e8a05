"""The README's "Several Prefect workers" recipe, run line for line from a copy of the checkout.

Only the placeholders change (hosts, ports, databases); nothing else is exported: no project
directory, no pull-step variable. The Prefect server keeps its state in PostgreSQL, two workers
share one pool and a PostgreSQL store, and the runs must complete from the copied checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from served import SAMPLE, checkout_copy, free_port, stop_group
from sqlalchemy import create_engine, text

from barkeeper.ingest.files import ingest_file
from models.engine import engine_for
from models.results import read_table
from models.schema import init_db
from models.tables import SessionMetric

pytestmark = [pytest.mark.server, pytest.mark.postgres]
RUN_TIMEOUT_S = 240


def recipe_steps() -> dict[int, str]:
    """The README's bash block of the recipe, split at its `# N.` comments."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("**Several Prefect workers**") :]
    block = section[section.index("```bash\n") + 8 : section.index("```\n", 10)]
    steps: dict[int, str] = {}
    for part in re.split(r"^# (?=\d\.)", block, flags=re.M)[1:]:
        number, _, body = part.partition(".")
        steps[int(number)] = body.split("\n", 1)[1]
    assert sorted(steps) == [1, 2, 3, 4], block
    return steps


def git_clone_variant(checkout: Path) -> Path:
    """prefect.yaml with the README's `git_clone` pull section, cloning this repository."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("**Workers on other machines**") :]
    pull = section[section.index("```yaml\n") + 8 : section.index("```\n", 10)]
    branch = subprocess.run(
        ["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    pull = pull.replace("https://github.com/your-org/barkeeper.git", str(REPO_ROOT))
    pull = pull.replace("branch: main", f"branch: {branch}")
    variant = checkout / "prefect.git.yaml"
    variant.write_text((checkout / "prefect.yaml").read_text() + "\n" + pull)
    return variant


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases: the Prefect server's and barkeeper's store."""
    admin_url = os.environ.get("BARKEEPER_TEST_POSTGRES_URL", "")
    if not admin_url:
        pytest.skip("BARKEEPER_TEST_POSTGRES_URL is not set (no PostgreSQL server)")
    names = [f"prefect_{uuid.uuid4().hex[:10]}", f"bk_{uuid.uuid4().hex[:10]}"]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0].split("://", 1)[1]  # user@host:port
    yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_readme_recipe_runs_from_any_checkout(tmp_path: Path, databases: tuple[str, str]) -> None:
    prefect_db, store_db = databases
    store_url = f"postgresql+psycopg://{store_db}"
    engine = engine_for(store_url)
    init_db(engine)
    for path in sorted(SAMPLE.glob("*.csv")):
        ingest_file(engine, path)
    checkout = checkout_copy(tmp_path / "somewhere" / "barkeeper")
    port = free_port()
    substitutions = {
        "user:pass@dbhost/prefect": prefect_db,
        "user:pass@dbhost/barkeeper": store_db,
        "prefect-host:4200": f"127.0.0.1:{port}",
        "--port 4200": f"--port {port}",
    }
    steps = {}
    for number, body in recipe_steps().items():
        for placeholder, value in substitutions.items():
            body = body.replace(placeholder, value)
        steps[number] = body
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "BARKEEPER_"))},
        "PREFECT_HOME": str(tmp_path / "prefect-home"),  # the test's own profile, not the user's
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    background: list[subprocess.Popen] = []

    def start(number: int, name: str) -> None:
        with (logs / name).open("wb") as out:
            background.append(
                subprocess.Popen(
                    ["bash", "-euc", steps[number]],
                    cwd=checkout,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def run(number: int) -> str:
        done = subprocess.run(
            ["bash", "-euc", steps[number]], cwd=checkout, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"step {number}:\n{done.stdout}\n{done.stderr}\n{tail()}"
        return done.stdout

    def tail() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs.iterdir())

    api_url = f"http://127.0.0.1:{port}/api"
    try:
        start(1, "server.log")
        wait_healthy(api_url, background[0], tail)
        run(2)
        start(3, "worker-1.log")
        start(3, "worker-2.log")
        submitted = run(4)
        run_ids = re.findall(r"UUID: ([0-9a-f-]{36})", submitted)
        assert len(run_ids) == 2, submitted
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
            deployment = c.read_deployment_by_name("replay_sessions/replay")
            (step,) = deployment.pull_steps
            directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
            assert directory == str(checkout)
            deadline = time.monotonic() + RUN_TIMEOUT_S
            runs = []
            for run_id in run_ids:
                while (flow_run := c.read_flow_run(uuid.UUID(run_id))).state is None or (
                    not flow_run.state.is_final() and time.monotonic() < deadline
                ):
                    time.sleep(0.5)
                runs.append(flow_run)
        assert [r.state.type for r in runs] == [StateType.COMPLETED] * 2, tail()
        sessions = set()
        for flow_run in runs:
            sessions |= set(read_table(engine, SessionMetric, str(flow_run.id))["session"])
        assert {str(s) for s in sessions} == {"2023-07-10", "2023-07-11"}

        # The README's variant for workers without the checkout: each run clones the code.
        variant = git_clone_variant(checkout)
        deployed = subprocess.run(
            ["prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(variant)],
            cwd=checkout,
            env={**env, "PREFECT_API_URL": api_url},
            capture_output=True,
            text=True,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
            deployment = c.read_deployment_by_name("replay_sessions/replay")
            assert "prefect.deployments.steps.git_clone" in deployment.pull_steps[0]
            parameters = {"replay": {"symbols": ["MSFT"], "start": "2023-07-12"}}
            cloned = c.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not (run := c.read_flow_run(cloned.id)).state.is_final():
                assert time.monotonic() < deadline, tail()
                time.sleep(0.5)
        assert run.state.type == StateType.COMPLETED, tail()
    finally:
        for process in reversed(background):
            stop_group(process, grace_s=10)
        engine.dispose()


def wait_healthy(api_url: str, server: subprocess.Popen, tail: Callable[[], str]) -> None:
    """Wait for the recipe's server to answer /health (it migrates its database first)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, tail()
        try:
            urllib.request.urlopen(f"{api_url}/health", timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the recipe's server did not answer:\n{tail()}")
