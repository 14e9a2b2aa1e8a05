"""Commands that run no flow load no flow machinery: GX, Prefect (and its server), Dask and
matplotlib stay unloaded for `--help`, `import`, `report` and `export`.

Oracle: Python's own import log (PYTHONPROFILEIMPORTTIME) of the installed command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_DIR

BARKEEPER = Path(sys.executable).with_name("barkeeper")
HEAVY = ("great_expectations", "prefect", "dask", "distributed", "matplotlib")


def loaded_modules(args: list[str], env: dict[str, str]) -> set[str]:
    """Top-level packages `barkeeper *args` imported, whatever its exit status."""
    done = subprocess.run(
        [str(BARKEEPER), *args],
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert lines, done.stderr
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["import", str(SAMPLE_DIR / "DBB_1min_2023-07-10_to_2023-07-13.csv"), "--json"],
        ["report", "--latest", "--json"],
        ["export", "--latest", "--symbol", "DBB", "--date", "2023-07-10"],
    ],
    ids=["help", "import", "report", "export"],
)
def test_commands_without_flows_load_no_flow_machinery(args: list[str], sqlite_url: str) -> None:
    env = {**os.environ, "BARKEEPER_DATABASE_URL": sqlite_url}
    assert sorted(set(HEAVY) & loaded_modules(args, env)) == []
