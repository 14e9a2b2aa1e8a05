"""A new user's first hour, run as they would run it: the README's commands as written, the demo
and the three commands it suggests, `--help` at 80 columns, and the one-line refusals.

Oracles: the README text itself (its commands are parsed out and run by bash), the command
tree of the CLI (every declared flag must appear whole in its help), the file system (a refused
read creates no store).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import REPO_ROOT

from barkeeper.cli.demo import DEMO_NEXT
from barkeeper.cli.main import app
from barkeeper.core.vocabulary import LEGEND

BIN = Path(sys.executable).parent
BARKEEPER = BIN / "barkeeper"


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a shell in a fresh clone: no store URL, Prefect kept in the clone.

    The ephemeral Prefect API may start slowly on a loaded test machine: it gets 2 minutes.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BARKEEPER_")}
    return {
        **env,
        "PREFECT_HOME": str(tmp_path / ".prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "COLUMNS": "100",
        **extra,
    }


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def fresh_clone(tmp_path: Path) -> Path:
    """A folder shaped like a clone after `make`: .venv and the bundled sample."""
    clone = tmp_path / "clone"
    (clone / "data").mkdir(parents=True)
    (clone / "data" / "sample").symlink_to(REPO_ROOT / "data" / "sample")
    (clone / ".venv").symlink_to(BIN.parent)
    return clone


def commands() -> dict[str, Any]:
    """The CLI's commands by name (typer's click group)."""
    return dict(typer.main.get_command(app).commands)


@pytest.mark.parametrize("name", sorted(commands()))
def test_help_fits_80_columns_without_cutting_a_flag(name: str) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([str(BARKEEPER), name, "--help"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for param in commands()[name].params:
        for flag in [*param.opts, *param.secondary_opts]:
            if flag.startswith("-"):
                assert re.search(rf"(^|[\s,/]){re.escape(flag)}(\s|$|,|=)", done.stdout), flag


@pytest.mark.parametrize(
    "args",
    [["report", "--latest"], ["export", "--latest", "--symbol", "MSFT", "--date", "2023-07-10"]],
)
def test_report_and_export_on_a_missing_store_exit_2_and_create_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    done = run([str(BARKEEPER), *args], user_env(tmp_path), tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("barkeeper: error: no store")
    assert done.stdout == ""
    assert not (tmp_path / "barkeeper.db").exists()


def test_the_readme_commands_work_as_written(tmp_path: Path) -> None:
    """The "Using it" block, run by bash in a fresh clone (bench, 8-9 minutes, left out)."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("## Using it", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    script = "\n".join(
        line for line in block.splitlines() if not line.startswith("barkeeper bench")
    )
    assert script.startswith("source .venv/bin/activate")
    clone = fresh_clone(tmp_path)
    done = run(["bash", "-e", "-c", script], user_env(tmp_path), clone)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert (clone / "barkeeper.db").is_file()
    assert LEGEND in " ".join(done.stdout.split())  # under the replay's and the report's tables


def test_the_demo_says_where_things_are_and_what_to_try_next(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    env = user_env(tmp_path)
    demo = run([str(clone / ".venv" / "bin" / "barkeeper"), "demo"], env, clone)
    assert demo.returncode == 0, demo.stderr[-3000:]
    out = demo.stdout
    assert "imported MSFT_1min_2023-07-10_to_2023-07-13.csv" in out  # human output: stdout
    store = re.search(r"^store: +(.+)$", out, re.M)
    docs = re.search(r"^Data Docs: +(.+index\.html)$", out, re.M)
    assert store and docs
    assert (clone / "barkeeper.db").is_file() and Path(docs.group(1)).is_file()
    assert LEGEND in " ".join(out.split())
    suggested = out.split("next, try:\n", 1)[1].splitlines()
    assert [line.strip() for line in suggested] == list(DEMO_NEXT)
    for line in DEMO_NEXT:
        args = shlex.split(line.split("#", 1)[0])
        done = run([str(clone / ".venv" / "bin" / args[0]), *args[1:]], env, clone)
        assert done.returncode == 0, (line, done.stderr[-2000:])
        assert done.stdout.strip()


def test_a_run_without_any_data_exits_2_with_one_line(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    env = user_env(tmp_path)
    barkeeper = str(clone / ".venv" / "bin" / "barkeeper")
    assert run([barkeeper, "import", *map(str, (clone / "data" / "sample").glob("*.csv"))], env,
               clone).returncode == 0  # fmt: skip
    flags = ["--quality-threshold", "90", "--validation-interval", "300", "--calendar", "XNYS"]
    day = [1689134400, 1689220800]  # 2023-07-12 00:00 to 2023-07-13 00:00 New York, UTC seconds
    with sqlite3.connect(clone / "barkeeper.db") as conn:  # a trading day the store lacks
        conn.execute("DELETE FROM bar WHERE ts >= ? AND ts < ?", day)
    dates = ["--start", "2023-07-12", "--end", "2023-07-12"]
    done = run([barkeeper, "replay", "--symbols", "MSFT", *dates, *flags], env, clone)
    assert done.returncode == 2
    said = ("barkeeper: warning:", "barkeeper: error:")  # not the Prefect server notice
    lines = [line for line in done.stderr.splitlines() if line.startswith(said)]
    assert lines == [
        "barkeeper: warning: MSFT has no data on 2023-07-12: no source has a bar "
        "(no data, not a no-trade session)",
        "barkeeper: error: no data: no source has a bar of any symbol in these sessions; "
        "check the dates or import the bars first",
    ]
    with sqlite3.connect(clone / "barkeeper.db") as conn:
        (parameters,) = conn.execute("SELECT parameters FROM run").fetchone()
    recorded = json.loads(parameters)
    assert recorded["quality_threshold"] == 90
    assert recorded["validation_interval_seconds"] == 300 and recorded["calendar"] == "XNYS"


def test_the_table_has_a_row_per_extended_hours_segment() -> None:
    from rich.console import Console

    from barkeeper.reports.report import render

    figures = {"bar_quality": 50.0, "completeness": 100.0, "actual_bars": 1, "expected_bars": 2}
    report = {
        "run_id": "r",
        "status": "completed",
        "data_docs": "",
        "quality_threshold": 95.0,
        "sessions": [
            {
                "date": "2023-07-10",
                "symbols": {"MSFT": {**figures, "segments": {"pre": figures, "post": figures}}},
            }
        ],
    }
    console = Console(width=160, record=True)
    render(report, console)
    rows = [line for line in console.export_text().splitlines() if "2023-07-10" in line]
    assert [row.split("│")[2].strip() for row in rows] == ["MSFT", "MSFT (pre)", "MSFT (post)"]


def test_bench_says_how_long_and_shows_progress_per_section(tmp_path: Path) -> None:
    args = ["bench", "--sections", "kernel,coordinator", "--symbols", "10"]
    done = run([str(BARKEEPER), *args], user_env(tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert re.fullmatch(r"bench: 2 section\(s\), about \d+ min on 2 cores .*", lines[0])
    assert lines[1].startswith("bench: [1/2] kernel (about")
    assert re.fullmatch(r"bench: kernel done in \d+ s", lines[2])
    assert lines[3].startswith("bench: [2/2] coordinator (about")
    assert "kernel" in done.stdout and "coordinator" in done.stdout  # the figures: stdout
