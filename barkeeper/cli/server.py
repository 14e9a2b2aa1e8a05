"""`barkeeper server start|stop|status`: one local Prefect server that every command shares.

Without it each command starts a temporary Prefect API of its own (~8 s) and several commands
started together race for it. The server runs in its own process group with its own home
(default `./.prefect`, so the user's Prefect profile is untouched) and a state file there that
commands read to find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from barkeeper.cli.app import JsonOption, app, user_errors
from barkeeper.errors import BarkeeperError

HOME_ENV = "BARKEEPER_SERVER_HOME"
"""Folder of the local server (its Prefect home, state file and log); default ./.prefect."""
STATE_FILE = "barkeeper-server.json"
DEFAULT_PORT = 4200
START_TIMEOUT_S = 180.0  # a cold start on a busy 2-core machine takes 5-30 s
STOP_GRACE_S = 15.0

server_app = typer.Typer(help="Run one local Prefect server that every command shares.")
app.add_typer(server_app, name="server")

HomeOption = Annotated[
    Path | None,
    typer.Option(
        help=f"Server folder (default: ${HOME_ENV}, else ./.prefect).", show_default=False
    ),
]


@dataclass(frozen=True)
class ServerState:
    """What `server start` recorded about the server it started."""

    pid: int
    port: int
    api_url: str
    home: str
    log: str

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")


def server_home(home: Path | None = None) -> Path:
    """The local server's folder: the option, else $BARKEEPER_SERVER_HOME, else ./.prefect."""
    return (home or Path(os.environ.get(HOME_ENV) or ".prefect")).resolve()


def answers(api_url: str, timeout_s: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check at `api_url`."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return response.status == 200
    except OSError:
        return False


def running_server(home: Path | None = None) -> ServerState | None:
    """The local server if its process is alive and its API answers, else None."""
    path = server_home(home) / STATE_FILE
    try:
        state = ServerState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not _is_our_server(state.pid) or not answers(state.api_url):
        return None
    return state


def _is_our_server(pid: int) -> bool:
    """Whether `pid` is alive and still a `prefect server` (not a reused pid)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc: trust the pid
    return b"prefect" in b" ".join(command) and b"server" in command


def start_server(home: Path | None = None, port: int = DEFAULT_PORT) -> tuple[ServerState, bool]:
    """Start the local server unless it runs; returns its state and whether it was started."""
    folder = server_home(home)
    if (state := running_server(folder)) is not None:
        return state, False
    api_url = f"http://127.0.0.1:{port}/api"
    if answers(api_url):
        raise BarkeeperError(
            f"port {port} already serves a Prefect API not started here; use it with "
            f"PREFECT_API_URL={api_url} or start on another port (--port)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(folder),
        PREFECT_UI_API_URL=api_url,  # the browser calls this API; any port but 4200 needs it
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    command = [sys.executable, "-m", "prefect", "server", "start"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Ctrl-C in this terminal leaves it running
        )
    state = ServerState(process.pid, port, api_url, str(folder), str(log))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_group(process.pid)
            raise BarkeeperError(f"the Prefect server did not start; see {log}")
        time.sleep(0.25)
    (folder / STATE_FILE).write_text(json.dumps(asdict(state)) + "\n")
    return state, True


def stop_server(home: Path | None = None) -> ServerState | None:
    """Stop the local server and its children; returns what was stopped (None: nothing ran)."""
    path = server_home(home) / STATE_FILE
    try:
        state = ServerState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    stopped = state if _is_our_server(state.pid) else None
    if stopped is not None:
        _stop_group(state.pid)
    path.unlink(missing_ok=True)
    return stopped


def _stop_group(pid: int) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after the grace period."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status of `pid` if this process started it (else nothing to do)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _describe(state: ServerState | None, as_json: bool, verb: str) -> None:
    if as_json:
        document = {"running": state is not None, **(asdict(state) if state else {})}
        sys.stdout.write(json.dumps(document) + "\n")
    elif state is None:
        print("not running")
    else:
        print(f"{verb} {state.api_url} (pid {state.pid}, UI {state.ui_url}, log {state.log})")


@server_app.command("start")
@user_errors
def start(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the API and UI.")] = 4200,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Start the local Prefect server (returns once its API answers); no-op if it runs."""
    print("starting the Prefect server ...", file=sys.stderr)
    state, started = start_server(home, port)
    _describe(state, json_output, "running at" if started else "already running at")


@server_app.command("stop")
@user_errors
def stop(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Stop the local Prefect server and everything it started."""
    state = stop_server(home)
    if json_output:
        sys.stdout.write(json.dumps({"stopped": state is not None}) + "\n")
    else:
        print("not running" if state is None else f"stopped the server at {state.api_url}")


@server_app.command("status")
@user_errors
def status(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Print the local server's API URL and pid, or "not running" (exit status 1)."""
    state = running_server(home)
    _describe(state, json_output, "running at")
    if state is None:
        raise typer.Exit(1)
