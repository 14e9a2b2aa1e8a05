"""`barkeeper blocks`: the Prefect blocks barkeeper reads (the store URL, the alert webhook)."""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

import typer

from barkeeper.cli.app import DbOption, app, shown_url, user_errors
from barkeeper.cli.automations import require_api
from barkeeper.errors import ParameterError
from barkeeper.settings import load_settings

DEFAULT_WEBHOOK = "barkeeper-alerts"

blocks_app = typer.Typer(
    help="Prefect blocks: the store URL as a Secret, the alert webhook.", no_args_is_help=True
)
app.add_typer(blocks_app, name="blocks")


@blocks_app.command("store")
@user_errors
def store_command(
    name: Annotated[str, typer.Argument(help="Name of the Secret block to write.")],
    db: DbOption = None,
) -> None:
    """Save the store URL (--db, else $BARKEEPER_DATABASE_URL) as a Prefect Secret block.

    Flow runs and commands then read it with BARKEEPER_DATABASE_BLOCK=NAME; the URL itself
    stays out of parameters, logs, artifacts and events.
    """
    from prefect.blocks.system import Secret

    require_api()
    url = db or load_settings().database_url
    Secret(value=url).save(name, overwrite=True)
    print(f"Secret block {name!r} holds {shown_url(url)}; use BARKEEPER_DATABASE_BLOCK={name}")


@blocks_app.command("webhook")
@user_errors
def webhook_command(
    url: Annotated[str, typer.Argument(help="http(s) URL that receives the notifications.")],
    name: Annotated[str, typer.Option("--name", help="Block name.")] = DEFAULT_WEBHOOK,
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private-urls",
            help="Allow a loopback or private address (Prefect refuses them by default).",
        ),
    ] = False,
) -> None:
    """Save a custom webhook notification block that the shipped automations notify through.

    It POSTs JSON `{"subject": ..., "body": ...}`; run `barkeeper automations apply` afterwards.
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    require_api()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ParameterError(f"URL: {url!r} is not an http(s) URL")
    if _private(parts.hostname) and not allow_private:
        raise ParameterError(
            f"URL: {parts.hostname} is a private address; pass --allow-private-urls to use it"
        )
    CustomWebhookNotificationBlock(
        name=name,
        url=url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        allow_private_urls=allow_private,
    ).save(name, overwrite=True)
    print(f"custom-webhook/{name} posts to {url}; now run `barkeeper automations apply`")


def _private(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback
