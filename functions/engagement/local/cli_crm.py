"""`engagement crm ...`: set HubSpot up, reconcile, replay the failures, pull outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(help="CRM sync: setup, reconcile, failure replay and outcome pull.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _hubspot() -> Any:
    from engagement.handlers import crm_sync
    from engagement.handlers.errors import NotConfigured
    from engagement.settings import Settings

    settings = Settings.from_env()
    try:
        from dataclasses import replace

        return crm_sync.crm_adapter(replace(settings, crm_provider="hubspot"))
    except NotConfigured as error:
        err.print(
            f"[red]{error}[/]. Set HUBSPOT_TOKEN to a private app token with the crm.schema.contacts.write scope."
        )
        raise typer.Exit(2) from None


def _crm_and_deps() -> tuple[Any, Any]:
    from engagement.handlers import crm_sync
    from engagement.settings import Settings

    return crm_sync.crm_adapter(Settings.from_env()), crm_sync.default_dependencies()


@app.command()
def setup() -> None:
    """Create the community property group and contact properties in HubSpot (safe to run again)."""
    from engagement.adapters.hubspot import CrmRejected

    try:
        outcome = _hubspot().setup_properties()
    except CrmRejected as error:
        err.print(f"[red]HubSpot refused the setup:[/] {error}")
        raise typer.Exit(1) from None
    for name, what in outcome.items():
        console.print(f"{name}: {what}")


@app.command()
def reconcile() -> None:
    """Push every member whose CRM copy is behind its current version (what the scheduled job does)."""
    from engagement.handlers.crm_reconcile import reconcile as run
    from engagement.local.cli import _existing_stack, _logs_to_stderr

    _logs_to_stderr()
    stack = _existing_stack()
    crm, deps = _crm_and_deps()
    summary = run(crm, deps)
    stack.stop()
    console.print(
        f"Reconciled: {summary.scanned} members read, {summary.already_synced} already in the CRM, "
        f"{summary.pushed} pushed, {len(summary.failed)} failed, {summary.calls} CRM calls."
    )
    for member_id, reason in sorted(summary.failed.items()):
        console.print(f"  {member_id}: {reason}")
    if summary.failed:
        raise typer.Exit(1)


@app.command("replay-failures")
def replay_failures(
    queue_url: str = typer.Option(
        None, help="The SQS failure destination (stack output CrmSyncFailureQueueUrl); default: the local failures file"
    ),
) -> None:
    """Re-drive stream records the CRM sync gave up on, at each member's current version.

    Deployed: each message of the failure queue names a shard and sequence range; those records are read back
    from the stream for their member ids, and each member's current item is delivered (a range past the stream's
    24-hour retention is answered with a full reconcile). Locally: the records in .engagement/failures.jsonl.
    Replayed messages and lines are removed; ones that fail again stay.
    """
    from engagement.local.cli import _existing_stack, _logs_to_stderr

    _logs_to_stderr()
    stack = _existing_stack()
    crm, deps = _crm_and_deps()
    if queue_url:
        import boto3

        from engagement.handlers.crm_reconcile import replay_failures as run

        summary = run(boto3.client("sqs"), queue_url, boto3.client("dynamodbstreams"), crm, deps)
        stack.stop()
        console.print(
            f"Replayed {summary.replayed} of {summary.messages} failure messages ({summary.members} members); "
            f"{summary.left} left on the queue."
            + (
                " Some ranges were past the stream's retention: ran a full reconcile."
                if summary.fell_back_to_reconcile
                else ""
            )
        )
        if summary.left:
            raise typer.Exit(1)
        return
    left = replay_local(crm, deps)
    stack.stop()
    if left:
        raise typer.Exit(1)


def replay_local(crm: Any, deps: Any) -> int:
    """Replay the local failures file; returns how many records are still failing."""
    from engagement.handlers.crm_reconcile import deliver_members
    from engagement.local.stack import home

    path = home() / "failures.jsonl"
    if not path.exists():
        console.print(f"No failures recorded ({path} does not exist).")
        return 0
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    member_ids = list(dict.fromkeys(r["dynamodb"]["Keys"]["member_id"]["S"] for r in records))
    items = [item for item in (deps.store.get_member(m) for m in member_ids) if item]
    summary = deliver_members(items, crm, deps)
    still = [r for r in records if r["dynamodb"]["Keys"]["member_id"]["S"] in summary.failed]
    _rewrite(path, still)
    console.print(
        f"Replayed {len(records)} failed records ({len(member_ids)} members): {summary.pushed} pushed, "
        f"{summary.already_synced} already in the CRM, {len(summary.failed)} still failing."
    )
    return len(still)


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        path.unlink()
        return
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in records), encoding="utf-8")


@app.command()
def pull() -> None:
    """Pull lifecycle stages and closed-won deals from HubSpot into the outcomes table (what the schedule does)."""
    from engagement.adapters.hubspot_inbound import HubSpotOutcomes
    from engagement.adapters.outcomes import OutcomeStore
    from engagement.adapters.sync_state import SyncStore
    from engagement.domain import scoring
    from engagement.handlers import ingest
    from engagement.local.cli import _existing_stack, _logs_to_stderr

    _logs_to_stderr()
    stack = _existing_stack()
    base = ingest.default_dependencies()
    outcomes = HubSpotOutcomes(
        _hubspot(),
        lambda email: base.store.member_for_key(f"email#{email}"),
        OutcomeStore(base.settings, base.store.client),
        base.settings.hubspot_plan_property,
    )
    summary = outcomes.pull(SyncStore(base.settings, base.store.client), scoring.utc_now())
    stack.stop()
    console.print(
        f"Pulled {summary.contacts} contacts and {summary.deals} closed-won deals: {summary.linked} contacts linked "
        f"to members, {summary.outcomes} outcomes stored, {summary.calls} HubSpot calls."
    )
