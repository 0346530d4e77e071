"""`engagement salesforce setup|check|pull`: ready the org for the Salesforce CRM sync, verify it, pull outcomes.

`setup` creates what is missing, and nothing else (run it again and it does nothing): the five custom
fields through the Tooling API, a permission set `Community_Engagement_Sync` granting read and edit on
them, and its assignment to the integration user. It needs credentials of a user who may customize the
application and assign permission sets (an admin's client-credentials app), with `--assignee` naming the
integration user; without it the permission set goes to the user the credentials act as.

`check` fetches a token with the sync's own credentials and reads the describe of the configured object
(Contact or Lead): every custom field the upserts write must exist with the right type, be visible and
writable for that user, and the external-id field must be marked External ID. It changes nothing.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

salesforce_app = typer.Typer(
    help="Salesforce CRM: set-up, checks and the outcome pull.", no_args_is_help=True, add_completion=False
)
console = Console()
err = Console(stderr=True)


def setup(adapter: Any, assignee: str | None = None) -> list[str]:
    """Create the missing fields, permission set, field permissions and assignment; what was done, in order."""
    from engagement.adapters.hubspot import CrmRejected
    from engagement.domain import salesforce as sf

    settings = adapter.settings
    sobject = settings.sobject
    definitions = sf.field_definitions(sobject, settings.external_id_field)
    done: list[str] = []

    existing = {
        f"{r['DeveloperName']}__c"
        for r in adapter.tooling_query(
            f"SELECT Id, DeveloperName FROM CustomField WHERE TableEnumOrId = {sf.soql_string(sobject)}"
        )
    }
    for full_name, metadata in definitions:
        if full_name.split(".", 1)[1] not in existing:
            adapter.create_custom_field(full_name, metadata)
            done.append(f"created field {full_name}")

    found = adapter.query(f"SELECT Id FROM PermissionSet WHERE Name = {sf.soql_string(sf.PERMISSION_SET)}")
    if found:
        permission_set = str(found[0]["Id"])
    else:
        record = {
            "attributes": {"type": "PermissionSet"},
            "Name": sf.PERMISSION_SET,
            "Label": "Community Engagement Sync",
            "Description": "Read and edit the community engagement fields (engagement salesforce setup).",
        }
        permission_set = _created(adapter.create([record])[0], f"permission set {sf.PERMISSION_SET}", CrmRejected)
        done.append(f"created permission set {sf.PERMISSION_SET}")

    granted = {
        str(r["Field"])
        for r in adapter.query(
            f"SELECT Field FROM FieldPermissions WHERE ParentId = {sf.soql_string(permission_set)} "
            f"AND SobjectType = {sf.soql_string(sobject)}"
        )
    }
    grants = [
        {
            "attributes": {"type": "FieldPermissions"},
            "ParentId": permission_set,
            "SobjectType": sobject,
            "Field": full_name,
            "PermissionsRead": True,
            "PermissionsEdit": True,
        }
        for full_name, _ in definitions
        if full_name not in granted
    ]
    for grant, item in zip(grants, adapter.create(grants) if grants else [], strict=True):
        _created(item, f"read and edit on {grant['Field']}", CrmRejected)
        done.append(f"granted read and edit on {grant['Field']}")

    user = assignee or adapter.auth.token().user_id
    if not sf.is_record_id(user):
        raise CrmRejected("no user to assign the permission set to: pass --assignee with the integration user's id")
    assigned = adapter.query(
        "SELECT Id FROM PermissionSetAssignment "
        f"WHERE PermissionSetId = {sf.soql_string(permission_set)} AND AssigneeId = {sf.soql_string(str(user))}"
    )
    if not assigned:
        record = {
            "attributes": {"type": "PermissionSetAssignment"},
            "PermissionSetId": permission_set,
            "AssigneeId": user,
        }
        _created(adapter.create([record])[0], f"assignment of {sf.PERMISSION_SET} to {user}", CrmRejected)
        done.append(f"assigned {sf.PERMISSION_SET} to {user}")
    return done


def _created(item: Any, what: str, error: type[Exception]) -> str:
    from engagement.domain.salesforce import item_failure

    reason = item_failure(item)
    if reason:
        raise error(f"creating the {what}: {reason}")
    return str(item["id"])


@salesforce_app.command("setup")
def setup_command(
    assignee: str = typer.Option(None, help="The integration user's id (005...); default: the credentials' user"),
) -> None:
    """Create the custom fields, permission set and assignment the sync needs (idempotent)."""
    import httpx

    from engagement.adapters.hubspot import CrmRejected, TransientError
    from engagement.adapters.salesforce import Ambiguous

    adapter = _adapter()
    try:
        done = setup(adapter, assignee)
    except (CrmRejected, TransientError, Ambiguous, httpx.TransportError) as error:
        err.print(f"[red]Salesforce refused:[/] {error}")
        raise typer.Exit(1) from None
    for line in done:
        console.print(f"[green]✓[/] {line}")
    console.print("Nothing to do: the org is set up." if not done else "Done; `engagement salesforce check` verifies.")


def _adapter() -> Any:
    from engagement.adapters.salesforce import salesforce_from_env
    from engagement.handlers.errors import NotConfigured
    from engagement.settings import SettingsError

    try:
        return salesforce_from_env()
    except (NotConfigured, SettingsError) as error:
        err.print(f"[red]Not configured:[/] {error}")
        raise typer.Exit(2) from None


def check(adapter: Any) -> list[str]:
    """The problems found (empty when ready)."""
    from engagement.domain.salesforce import setup_problems

    return setup_problems(adapter.describe(), adapter.settings.external_id_field)


@salesforce_app.command("check")
def check_command() -> None:
    """Check the credentials and the custom fields of the configured Salesforce object (changes nothing)."""
    from engagement.adapters.hubspot import CrmRejected, TransientError

    adapter = _adapter()
    try:
        problems = check(adapter)
    except (CrmRejected, TransientError) as error:
        err.print(f"[red]Salesforce refused:[/] {error}")
        raise typer.Exit(1) from None
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/] {problem}")
        console.print("Create or fix these fields as docs/salesforce.md describes, then run this again.")
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {adapter.settings.sobject} has every field the CRM sync writes.")


@salesforce_app.command("pull")
def pull_command() -> None:
    """Pull changed contacts and won opportunities into the outcomes table (what the schedule does)."""
    import httpx

    from engagement.adapters.hubspot import CrmRejected, TransientError
    from engagement.adapters.outcomes import OutcomeStore
    from engagement.adapters.salesforce import Ambiguous
    from engagement.adapters.sync_state import SyncStore
    from engagement.domain import scoring
    from engagement.handlers import ingest, salesforce_pull
    from engagement.local.cli import _existing_stack, _logs_to_stderr
    from engagement.settings import SalesforceSettings

    adapter = _adapter()  # first: without credentials there is nothing else to set up
    _logs_to_stderr()
    stack = _existing_stack()
    try:
        store = ingest.default_dependencies().store
        summary = salesforce_pull.pull(
            adapter,
            store,
            OutcomeStore(store.settings, store.client),
            SyncStore(store.settings, store.client),
            SalesforceSettings.from_env(),
            scoring.utc_now(),
        )
    except (CrmRejected, TransientError, Ambiguous, httpx.TransportError) as error:
        err.print(f"[red]Salesforce refused:[/] {error}")
        raise typer.Exit(1) from None
    finally:
        stack.stop()
    console.print(
        f"Pulled {summary.people} {adapter.settings.sobject.lower()}s and {summary.opportunities} won opportunities "
        f"since {summary.since}: {summary.linked_by_external_id + summary.linked_by_email} linked to members "
        f"({summary.linked_by_email} by email, {summary.stamped} stamped with our id), {summary.unlinked} unlinked, "
        f"{summary.outcomes} outcomes stored, {summary.calls} Salesforce calls."
    )
