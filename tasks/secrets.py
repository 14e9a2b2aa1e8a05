"""Settings as a flow run uses them: the store URL may come from a Prefect Secret block.

`BARKEEPER_DATABASE_BLOCK=<name>` names a `prefect.blocks.system.Secret` holding the store URL
(`barkeeper blocks store NAME` creates it). The URL is then read here, at run time, and never
passed as a parameter, logged, or put in an artifact or event.
"""

from __future__ import annotations

from barkeeper.errors import ParameterError
from barkeeper.settings import Settings, load_settings


def run_settings(**overrides: object) -> Settings:
    """`load_settings(**overrides)`, with the store URL from the Secret block when one is named."""
    settings = load_settings(**overrides)
    if not settings.database_block:
        return settings
    return settings.model_copy(update={"database_url": secret_value(settings.database_block)})


def secret_value(name: str) -> str:
    """The value of the Secret block `name` on the Prefect API; ParameterError if there is none."""
    import httpx
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name, validate=False).get()
    except ValueError as error:  # Prefect's "Unable to find block document named ..."
        raise ParameterError(
            f"BARKEEPER_DATABASE_BLOCK: no Secret block named {name!r} on the Prefect API "
            f"({error}); create it with `barkeeper blocks store {name}`"
        ) from None
    except (OSError, RuntimeError, httpx.HTTPError) as error:
        raise ParameterError(
            f"BARKEEPER_DATABASE_BLOCK: cannot read Secret block {name!r} from the Prefect API: "
            f"{type(error).__name__}: {error}"
        ) from None
    if not isinstance(value, str) or not value:
        raise ParameterError(f"BARKEEPER_DATABASE_BLOCK: Secret block {name!r} holds no URL")
    return value
