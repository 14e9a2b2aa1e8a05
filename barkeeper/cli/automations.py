"""`barkeeper automations apply`: the automations of `automations/*.yaml` on a Prefect server.

The files use Prefect's own format (`prefect automation create --from-file`) with two names in
place of server-specific ids: an action's `deployment: flow/deployment` becomes its
`deployment_id`, and `block: block-type/name` its `block_document_id`. Applying is idempotent:
an automation of the same name is updated, not duplicated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from barkeeper.cli.app import JsonOption, app, user_errors
from barkeeper.errors import ParameterError

AUTOMATIONS_DIR = Path(__file__).resolve().parents[2] / "automations"

automations_app = typer.Typer(
    help="Prefect automations shipped in automations/*.yaml.", no_args_is_help=True
)
app.add_typer(automations_app, name="automations")


@dataclass(frozen=True)
class Applied:
    """What became of one automation file."""

    file: str
    name: str
    status: str  # created | updated | skipped
    reason: str = ""


class MissingReference(ParameterError):
    """An automation names a deployment or block the server does not have (yet)."""


def require_api() -> str:
    """The configured Prefect API URL; automations and blocks on an ephemeral API would vanish."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if not api:
        raise ParameterError(
            "PREFECT_API_URL is not set: automations and blocks live on a running Prefect "
            "server (start one with `make serve`, then set PREFECT_API_URL to its API)"
        )
    return api


def automation_files(folder: Path) -> list[Path]:
    """The YAML and JSON files of `folder`, in name order (ParameterError if there are none)."""
    if not folder.is_dir():
        raise ParameterError(f"--dir: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    if not files:
        raise ParameterError(f"--dir: no automation files (*.yaml, *.json) in {folder}")
    return files


def load_spec(path: Path) -> dict[str, Any]:
    """One automation as written in its file (YAML or JSON)."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, yaml.YAMLError) as error:
        raise ParameterError(f"{path}: cannot read the automation: {error}") from None
    if not isinstance(spec, dict) or not spec.get("name"):
        raise ParameterError(f"{path}: not an automation (a mapping with a name)")
    return spec


def _actions(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("actions", "actions_on_trigger", "actions_on_resolve"):
        yield from spec.get(key) or []


def resolve(spec: dict[str, Any], client: Any) -> Any:
    """The spec as a Prefect `AutomationCore`, with deployment and block names made ids."""
    from prefect.events.schemas.automations import AutomationCore
    from prefect.exceptions import ObjectNotFound
    from pydantic import ValidationError

    spec = json.loads(json.dumps(spec))  # a copy to edit
    for action in _actions(spec):
        if name := action.pop("deployment", None):
            try:
                action["deployment_id"] = str(client.read_deployment_by_name(name).id)
            except ObjectNotFound:
                raise MissingReference(
                    f"deployment {name!r} not found: deploy prefect.yaml first"
                ) from None
        if ref := action.pop("block", None):
            block_type, _, block_name = ref.partition("/")
            try:
                document = client.read_block_document_by_name(block_name, block_type)
            except ObjectNotFound:
                raise MissingReference(
                    f"notification block {ref!r} not found: create it with "
                    f"`barkeeper blocks webhook URL --name {block_name}`"
                ) from None
            action["block_document_id"] = str(document.id)
    try:
        return AutomationCore.model_validate(spec)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ParameterError(f"automation {spec['name']!r}: {where}: {first['msg']}") from None


def apply_automations(folder: Path = AUTOMATIONS_DIR) -> list[Applied]:
    """Create or update each automation of `folder` on the configured Prefect API.

    An automation whose deployment or block is missing is skipped with the reason; any other
    problem (a malformed file, an unreachable API) raises.
    """
    from prefect.client.orchestration import get_client

    specs = [(path, load_spec(path)) for path in automation_files(folder)]
    applied = []
    with get_client(sync_client=True) as client:
        for path, spec in specs:
            try:
                automation = resolve(spec, client)
            except MissingReference as missing:
                applied.append(Applied(path.name, spec["name"], "skipped", str(missing)))
                continue
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                for extra in existing[1:]:  # earlier duplicates, e.g. from `prefect automation`
                    client.delete_automation(extra.id)
                applied.append(Applied(path.name, automation.name, "updated"))
            else:
                client.create_automation(automation)
                applied.append(Applied(path.name, automation.name, "created"))
    return applied


@automations_app.command("apply")
@user_errors
def apply_command(
    folder: Annotated[
        Path,
        typer.Option("--dir", help="Folder of automation files.", show_default=False),
    ] = AUTOMATIONS_DIR,
    as_json: JsonOption = False,
) -> None:
    """Create or update the shipped automations on the Prefect API (PREFECT_API_URL)."""
    import httpx

    api = require_api()
    try:
        applied = apply_automations(folder)
    except (OSError, RuntimeError, httpx.HTTPError) as error:
        raise ParameterError(f"cannot apply automations on {api}: {error}") from None
    if as_json:
        print(json.dumps({"automations": [vars(a) for a in applied]}))
        return
    for item in applied:
        line = f"{item.status:8} {item.name} ({item.file})"
        print(line + (f": {item.reason}" if item.reason else ""))
