"""`engagement salesforce check`: is the org ready for the Salesforce CRM sync?

Fetches a token with the configured credentials and reads the describe of the configured object
(Contact or Lead): every custom field the upserts write must exist with the right type, be visible
and writable for the integration user, and the external-id field must be marked External ID. It
changes nothing in the org; docs/salesforce.md says how to create what is missing.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

salesforce_app = typer.Typer(help="Salesforce CRM set-up checks.", no_args_is_help=True, add_completion=False)
console = Console()
err = Console(stderr=True)


def check(adapter: Any) -> list[str]:
    """The problems found (empty when ready)."""
    from engagement.domain.salesforce import setup_problems

    return setup_problems(adapter.describe(), adapter.settings.external_id_field)


@salesforce_app.command("check")
def check_command() -> None:
    """Check the credentials and the custom fields of the configured Salesforce object (changes nothing)."""
    from engagement.adapters.hubspot import CrmRejected, TransientError
    from engagement.adapters.salesforce import salesforce_from_env
    from engagement.handlers.errors import NotConfigured
    from engagement.settings import SettingsError

    try:
        adapter = salesforce_from_env()
        problems = check(adapter)
    except (NotConfigured, SettingsError) as error:
        err.print(f"[red]Not configured:[/] {error}")
        raise typer.Exit(2) from None
    except (CrmRejected, TransientError) as error:
        err.print(f"[red]Salesforce refused:[/] {error}")
        raise typer.Exit(1) from None
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/] {problem}")
        console.print("Create or fix these fields as docs/salesforce.md describes, then run this again.")
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {adapter.settings.sobject} has every field the CRM sync writes.")
