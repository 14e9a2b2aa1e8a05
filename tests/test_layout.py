"""The architecture holds: imports only look down the layers, and no module outgrows its job.

Layers, bottom to top (a module may import its own layer and the ones below):

    foundation  barkeeper.errors, barkeeper.settings, barkeeper.params
    core        barkeeper.core                       pure numpy/pandas
    models      models                               the store
    work        barkeeper.live, .quality, .ingest, .reports
    tasks       tasks                                thin Prefect tasks
    flows       flows                                Prefect flows
    entry       barkeeper.cli, barkeeper.bench       the command line and the benchmarks

Read with `ast`, so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("barkeeper.errors", "barkeeper.settings", "barkeeper.params", "barkeeper")),
    ("core", ("barkeeper.core",)),
    ("models", ("models",)),
    ("work", ("barkeeper.live", "barkeeper.quality", "barkeeper.ingest", "barkeeper.reports")),
    ("tasks", ("tasks",)),
    ("flows", ("flows",)),
    ("entry", ("barkeeper.cli", "barkeeper.bench")),
]
PROJECT_ROOTS = ("barkeeper", "models", "tasks", "flows")
NO_ORCHESTRATION = ("prefect", "prefect_dask", "dask", "distributed")
NO_IO = (*NO_ORCHESTRATION, "sqlalchemy", "sqlmodel", "alembic", "great_expectations")
MAX_LINES = 400


def layer_of(module: str) -> int:
    """Rank of the layer a dotted module name belongs to (longest matching prefix wins)."""
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> list[Path]:
    return sorted(
        p
        for root in PROJECT_ROOTS
        for p in (REPO_ROOT / root).rglob("*.py")
        if "migrations" not in p.parts
    )


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute, including imports inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def violations(path: Path) -> list[str]:
    """What in `path` breaks the layering rules, one readable line each."""
    name = module_name(path)
    rank = layer_of(name)
    problems = []
    for target in sorted(imports_of(path)):
        top = target.split(".")[0]
        if top in PROJECT_ROOTS:
            target_rank = layer_of(target)
            if target_rank > rank:
                problems.append(
                    f"{name} ({LAYERS[rank][0]}) imports {target} ({LAYERS[target_rank][0]})"
                )
        elif name.startswith("barkeeper.core") and top in NO_IO:
            problems.append(f"{name} is pure computation but imports {target}")
        elif rank <= layer_of("barkeeper.live") and top in NO_ORCHESTRATION:
            problems.append(f"{name} sits below the tasks but imports {target}")
    return problems


def test_every_project_module_belongs_to_a_layer() -> None:
    unplaced = [module_name(p) for p in project_modules() if layer_of(module_name(p)) < 0]
    assert unplaced == []


def test_imports_only_look_down() -> None:
    problems = [line for path in project_modules() for line in violations(path)]
    assert problems == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # the circle the layout issue found: command modules importing the app's assembly
        ("barkeeper/live/x.py", "from barkeeper.cli.main import app", "imports barkeeper.cli"),
        # work reaching up into orchestration for its parameters
        ("tasks/x.py", "from flows.replay import replay_sessions", "imports flows.replay"),
        ("models/x.py", "from tasks.replay import open_run", "imports tasks.replay"),
        ("barkeeper/core/x.py", "import great_expectations as gx", "pure computation"),
        ("barkeeper/core/x.py", "from sqlalchemy import select", "pure computation"),
        ("barkeeper/live/x.py", "from prefect import task", "below the tasks"),
        ("barkeeper/core/x.py", "def f():\n    from models.tables import Bar", "imports models"),
    ],
)
def test_the_rules_catch_violations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str, expected: str
) -> None:
    fake_root = tmp_path
    path = fake_root / module
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n")
    monkeypatch.setattr(__import__(__name__), "REPO_ROOT", fake_root)
    assert any(expected in line for line in violations(path))


def test_modules_stay_small_and_say_what_they_are_for() -> None:
    long = {}
    undocumented = []
    for path in project_modules():
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            long[module_name(path)] = text.count("\n")
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            undocumented.append(module_name(path))
    assert long == {}, f"modules over {MAX_LINES} lines: split them by job"
    assert undocumented == []
