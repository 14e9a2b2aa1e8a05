"""`barkeeper server start|status|stop`: the server answers once start returns, status names it,
stop leaves no process of it behind, and a second start finds the running one.

Oracle: the Prefect API's own /api/health and the process table (/proc).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from served import free_port

BARKEEPER = Path(sys.executable).with_name("barkeeper")


def barkeeper(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BARKEEPER), *args], env=env, capture_output=True, text=True, timeout=300
    )


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_server_starts_answers_is_found_and_stops_with_its_children(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["BARKEEPER_SERVER_HOME"] = str(tmp_path / "server")
    port = free_port()

    assert barkeeper("server", "status", env=env).stdout.strip() == "not running"
    started = barkeeper("server", "start", "--port", str(port), "--json", env=env)
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["api_url"] == f"http://127.0.0.1:{port}/api"
    try:
        with urllib.request.urlopen(f"{state['api_url']}/health", timeout=10) as response:
            assert response.status == 200
        status = barkeeper("server", "status", env=env)
        assert status.returncode == 0
        assert state["api_url"] in status.stdout and f"pid {state['pid']}" in status.stdout
        again = barkeeper("server", "start", "--port", str(free_port()), "--json", env=env)
        assert json.loads(again.stdout)["pid"] == state["pid"]  # found, not started twice
        assert group_members(state["pid"])
    finally:
        stopped = barkeeper("server", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert group_members(state["pid"]) == []
    status = barkeeper("server", "status", env=env)
    assert (status.returncode, status.stdout.strip()) == (1, "not running")
