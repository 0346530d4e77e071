"""`engagement`: run the functions and the whole pipeline locally, with no AWS account."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from engagement.local.cli_salesforce import salesforce_app

app = typer.Typer(help="Community engagement scoring, run locally.", no_args_is_help=True, add_completion=False)
# Wide enough for the members table when output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)
app.add_typer(salesforce_app, name="salesforce")

FUNCTIONS = {
    "github-webhook": "engagement.handlers.github_webhook",
    "discourse-webhook": "engagement.handlers.discourse_webhook",
    "slack-webhook": "engagement.handlers.slack_webhook",
    "discord-webhook": "engagement.handlers.discord_webhook",
    "bevy-webhook": "engagement.handlers.bevy_webhook",
    "events-endpoint": "engagement.handlers.events_endpoint",
    "recalc": "engagement.handlers.recalc",
    "crm-sync": "engagement.handlers.crm_sync",
    "salesforce-pull": "engagement.handlers.salesforce_pull",
    "discord-poller": "engagement.handlers.discord_poller",
    "circle-poller": "engagement.handlers.circle_poller",
    "meetup-poller": "engagement.handlers.meetup_poller",
    "crm-reconcile": "engagement.handlers.crm_reconcile",
    "hubspot-webhook": "engagement.handlers.hubspot_webhook",
    "hubspot-pull": "engagement.handlers.hubspot_pull",
    "identity-admin": "engagement.handlers.identity_admin",
}


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _logs_to_stderr(level: str = "WARNING") -> None:
    """Handler logs (JSON lines for CloudWatch) go to stderr, so stdout holds only the command's output."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", level)
    from engagement.observability import logger

    logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
    handler = logger.registered_handler
    if hasattr(handler, "setStream"):
        handler.setStream(sys.stderr)


def _handler(function: str) -> Any:
    import importlib

    if function not in FUNCTIONS:
        err.print(f"[red]unknown function {function!r}[/]; choose one of: {', '.join(FUNCTIONS)}")
        raise typer.Exit(2)
    return importlib.import_module(FUNCTIONS[function]).lambda_handler


def _start(stack: Any) -> Any:
    """Start a local stack, turning an unreachable endpoint into one clear line."""
    from botocore.exceptions import EndpointConnectionError

    try:
        return stack.start()
    except EndpointConnectionError as error:
        err.print(f"[red]Cannot reach DynamoDB:[/] {error}. Is the endpoint in AWS_ENDPOINT_URL_DYNAMODB running?")
        raise typer.Exit(2) from None


def _existing_stack() -> Any:
    """The stack another command started (`serve`) or the configured endpoint; exits if none."""
    from engagement.local.stack import LocalStack, apply_local_environment, configured_endpoint, running_endpoint

    apply_local_environment()
    endpoint = configured_endpoint() or running_endpoint()
    if endpoint is None:
        err.print(
            "No local stack is running. Start one with [bold]engagement serve[/] (or set "
            "AWS_ENDPOINT_URL_DYNAMODB), or run [bold]engagement demo[/]."
        )
        raise typer.Exit(2)
    return _start(LocalStack(endpoint))


@app.command()
def invoke(
    function: str = typer.Argument(..., help=f"One of: {', '.join(FUNCTIONS)}"),
    event_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A sample event, e.g. from events/"),
) -> None:
    """Run one function's handler on a sample event and print its response."""
    from engagement.local.stack import LambdaContext, LocalStack

    _logs_to_stderr("INFO")
    try:
        event = json.loads(event_file.read_text(encoding="utf-8"))
    except ValueError as error:
        err.print(f"[red]{event_file} is not valid JSON:[/] {error}")
        raise typer.Exit(2) from None
    handler = _handler(function)
    stack = _start(LocalStack())
    try:
        from engagement.local.sample_clock import pin_clock

        pin_clock(sys.modules[handler.__module__], event)  # samples signed long ago verify as when recorded
        response = handler(event, LambdaContext(function))
    finally:
        stack.stop()
    console.print_json(json.dumps(response, default=str))


@app.command()
def serve(port: int = typer.Option(8000, help="Port on 127.0.0.1")) -> None:
    """Serve POST /webhooks/{platform}, POST /events and /admin/... locally, with an embedded DynamoDB and the
    CRM sync stream."""
    from engagement.handlers import crm_sync
    from engagement.local.server import make_server, webhook_routes
    from engagement.local.stack import LOCAL_SECRETS, LocalStack, StreamPump
    from engagement.settings import ADMIN_API_TOKEN

    _logs_to_stderr()
    from botocore.exceptions import EndpointConnectionError

    try:
        stack = LocalStack().start(prefer_running=False)
    except EndpointConnectionError as error:
        err.print(f"[red]Cannot reach DynamoDB:[/] {error}. Is the endpoint in AWS_ENDPOINT_URL_DYNAMODB running?")
        raise typer.Exit(2) from None
    state = stack.write_state()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server as Ctrl-C does, removing the state file
    server = make_server(port)
    pump = StreamPump(stack, crm_sync.lambda_handler)
    stop = threading.Event()

    def pump_forever() -> None:
        while not stop.is_set():
            try:
                pump.drain()
            except Exception as error:  # keep serving; the next poll retries from the same iterator
                err.print(f"[yellow]stream poll failed:[/] {error}")
            stop.wait(1.0)

    threading.Thread(target=pump_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    console.print(f"DynamoDB endpoint: {stack.endpoint} ({'embedded moto' if stack.embedded else 'external'})")
    console.print("Webhooks: " + "  ".join(f"{base}{path}" for path in webhook_routes()))
    local = LOCAL_SECRETS[ADMIN_API_TOKEN]
    token = local if os.environ.get(ADMIN_API_TOKEN, local) == local else f"${ADMIN_API_TOKEN}"
    console.print(f"Identity admin API: {base}/admin/... (Authorization: Bearer {token}; docs/identity.md)")
    console.print(f"CRM updates go to: {_crm_destination()}")
    console.print(f"Other commands find this stack through {state}. Ctrl-C stops.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
        stack.clear_state()
        stack.stop()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _crm_destination() -> str:
    from engagement.settings import Settings

    settings = Settings.from_env()
    return settings.hubspot_base_url if settings.crm_provider == "hubspot" else settings.outbox_path


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        err.print(f"[red]--as-of must be an ISO 8601 time such as 2026-12-31T00:00:00Z, not {value!r}[/]")
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def recalc(as_of: str = typer.Option(None, "--as-of", help="ISO 8601 time to bring scores to (default: now)")) -> None:
    """Bring every member's score and tier to now (or --as-of), as the daily schedule does."""
    from engagement.handlers import ingest
    from engagement.handlers.recalc import recalculate

    _logs_to_stderr()
    moment = _parse_time(as_of)
    if moment < datetime.now(UTC) - timedelta(minutes=1):
        err.print(
            "[red]--as-of must not be in the past[/]: a past moment would count events that had not "
            "happened yet. Use a future time to see where decay takes scores and tiers."
        )
        raise typer.Exit(2)
    stack = _existing_stack()
    summary = recalculate(ingest.default_dependencies().store, moment)
    stack.stop()
    console.print(
        f"Recalculated as of {summary.as_of}: {summary.scanned} members read, {summary.written} written, "
        f"{summary.tier_changes} tier changes."
    )


@app.command()
def members(
    tier: str = typer.Option(None, help="Only members in this tier, e.g. Champion"),
    output: Format = typer.Option(Format.table, "--format", help="table, json or csv"),
) -> None:
    """List members with their identities, score and tier."""
    from engagement.handlers import ingest
    from engagement.local import members as view

    if tier:
        from engagement.adapters.config_source import current_taxonomy

        names = [t.name for t in current_taxonomy().ranked_tiers]
        if tier.lower() not in (name.lower() for name in names):
            err.print(f"[red]unknown tier {tier!r}[/]; tiers are: {', '.join(names)}")
            raise typer.Exit(2)
    stack = _existing_stack()
    rows = view.sorted_rows(ingest.default_dependencies().store.scan_members(), tier)
    stack.stop()
    if output is Format.json:
        sys.stdout.write(view.as_json(rows) + "\n")
    elif output is Format.csv:
        sys.stdout.write(view.as_csv(rows))
    else:
        console.print(view.as_table(rows))


@app.command()
def demo() -> None:
    """Run the whole pipeline on bundled sample deliveries and print the members table."""
    from engagement.local.demo import run_demo

    _logs_to_stderr()
    raise typer.Exit(run_demo(console))


from engagement.local.cli_pollers import backfill  # noqa: E402  (issue 3: pollers)

app.command()(backfill)
from engagement.local import cli_crm  # noqa: E402 - registered after the app exists

app.add_typer(cli_crm.app, name="crm")
from engagement.local import cli_identities  # noqa: E402 - registered after the app exists

app.add_typer(cli_identities.app, name="identities")
app.command(name="forget")(cli_identities.forget)

if __name__ == "__main__":
    app()
