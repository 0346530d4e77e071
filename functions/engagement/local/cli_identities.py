"""`engagement identities ...` and `engagement forget`: the operator's identity commands, against the local stack.

Every command works on whatever DynamoDB endpoint the other commands use (a running `engagement serve`, or
`AWS_ENDPOINT_URL_DYNAMODB`); with AWS credentials and no endpoint set, the same commands act on the deployed
tables. Identities are written `PLATFORM:USER_ID` (`github:583231`), `email:ADDRESS`, `sso:SUBJECT`,
`handle:github:LOGIN`, or a member id.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    help="Identity resolution: show, link, unlink, merge, unmerge, suggestions, history, import.",
    no_args_is_help=True,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

ACTOR_HELP = "Who is acting, for the audit trail (default: operator:<your user name>)"
WHY_HELP = "Why, for the audit trail"


def _actor(actor: str | None) -> str:
    if actor:
        return actor if ":" in actor else f"operator:{actor}"
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator:unknown"


def _ref(text: str, member_ok: bool = True) -> Any:
    from engagement.domain.identity import IdentityError, parse_ref

    try:
        return parse_ref(text, member_ok=member_ok)
    except IdentityError as error:
        err.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None


class _Session:
    """The identity store on the running local stack, with the taxonomy in force."""

    def __enter__(self) -> _Session:
        from engagement.adapters.config_source import current_taxonomy
        from engagement.adapters.identity_store import IdentityStore
        from engagement.handlers import ingest
        from engagement.local.cli import _existing_stack, _logs_to_stderr

        _logs_to_stderr()
        self.stack = _existing_stack()
        self.store = ingest.default_dependencies().store
        self.people = IdentityStore(self.store)
        self.taxonomy = current_taxonomy()
        self.now = datetime.now(UTC)
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> bool:
        from engagement.domain.identity import IdentityError

        self.stack.stop()
        if isinstance(error, IdentityError):
            err.print(f"[red]{error}[/]")
            raise typer.Exit(1) from None
        return False


def _print(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


@app.command()
def show(identity: str = typer.Argument(..., help="An identity or member id")) -> None:
    """The person an identity belongs to: every member, account and email, score, tier, prospect or customer."""
    ref = _ref(identity)
    with _Session() as s:
        _print(s.people.show(ref))


@app.command()
def link(
    member: str = typer.Argument(..., help="The member (or one of its identities) to link to"),
    identity: str = typer.Argument(..., help="The identity to attach; an account of another member moves here"),
    why: str = typer.Option(None, help=WHY_HELP),
    actor: str = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Attach an identity to a member (an account that belongs to another member moves with its points)."""
    target, ref = _ref(member), _ref(identity, member_ok=False)
    with _Session() as s:
        _print(s.people.link(target, ref, _actor(actor), s.now, s.taxonomy, why))


@app.command()
def unlink(
    member: str = typer.Argument(..., help="The member (or one of its identities)"),
    identity: str = typer.Argument(..., help="The identity to detach; an account becomes a member of its own"),
    why: str = typer.Option(None, help=WHY_HELP),
    actor: str = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Detach an identity from a member; an account leaves with exactly the points its events earned."""
    target, ref = _ref(member), _ref(identity, member_ok=False)
    with _Session() as s:
        _print(s.people.unlink(target, ref, _actor(actor), s.now, s.taxonomy, why))


@app.command()
def merge(
    member: str = typer.Argument(..., help="The member to merge (or one of its identities)"),
    into: str = typer.Argument(..., help="The member it becomes part of"),
    why: str = typer.Option(None, help=WHY_HELP),
    actor: str = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Make two members one: the score becomes the sum of both, brought to now; nothing is moved or lost."""
    first, second = _ref(member), _ref(into)
    with _Session() as s:
        _print(s.people.merge(first, second, _actor(actor), s.now, s.taxonomy, why=why))


@app.command()
def unmerge(
    member: str = typer.Argument(..., help="The merged member (or one of its identities) to take back out"),
    why: str = typer.Option(None, help=WHY_HELP),
    actor: str = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Undo a merge exactly: the member and what came in through it leave, with every event they earned."""
    ref = _ref(member)
    with _Session() as s:
        home = s.people.find(ref)
        _print(s.people.unmerge(home, _actor(actor), s.now, s.taxonomy, why=why))


@app.command()
def suggestions(
    apply: bool = typer.Option(False, "--apply", help="Merge the pairs whose rules identity.auto_merge_rules enables"),
    output: str = typer.Option("table", "--format", help="table or json"),
) -> None:
    """Pairs of members that may be one person, with a confidence and the reasons. Nothing merges by itself."""
    with _Session() as s:
        found = s.people.suggestions(s.taxonomy.identity)
        merged = s.people.apply_suggestions(s.taxonomy.identity, s.now, s.taxonomy) if apply else []
        names = {str(m["member_id"]): m.get("display_name") or m.get("name") for m in s.store.scan_members()}
    rows = [
        {
            "first": x.first,
            "second": x.second,
            "names": [names.get(x.first), names.get(x.second)],
            "confidence": x.confidence,
            "reasons": [{"rule": r.rule, "text": r.text} for r in x.reasons],
            "merged": x in merged,
        }
        for x in found
    ]
    if output == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title="Identity suggestions (merge with: engagement identities merge FIRST SECOND)")
    for column in ("First", "Second", "Confidence", "Reasons", "Merged"):
        table.add_column(column)
    for row in rows:
        first, second = (
            f"{n or '?'} ({m[:8]})" for n, m in zip(row["names"], (row["first"], row["second"]), strict=True)
        )
        reasons = "; ".join(r["text"] for r in row["reasons"])
        table.add_row(first, second, f"{row['confidence']:.2f}", reasons, "yes" if row["merged"] else "")
    console.print(table if rows else "No suggestions.")
    if not apply and any(set(r["rule"] for r in row["reasons"]) for row in rows):
        console.print("Only rules listed in the taxonomy's identity.auto_merge_rules merge with --apply.")


@app.command()
def history(member: str = typer.Argument(..., help="A member id or one of its identities")) -> None:
    """Every identity change of a member, oldest first: who or which rule, when, why, before and after."""
    ref = _ref(member)
    with _Session() as s:
        _print(s.people.history(ref))


@app.command(name="import")
def import_links(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV: one person per row"),
    actor: str = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Link identities listed one person per row (columns: email, sso, github_login, note, or a platform name)."""
    from engagement.domain.identity import parse_links_csv

    rows, errors = parse_links_csv(file.read_text(encoding="utf-8"))
    for problem in errors:
        err.print(f"[yellow]{problem}[/]")
    if not rows:
        err.print("[red]No row of the file can be imported.[/]")
        raise typer.Exit(2)
    with _Session() as s:
        summary = s.people.import_rows(rows, _actor(actor), s.now, s.taxonomy)
    for problem in summary["errors"]:
        err.print(f"[yellow]{problem}[/]")
    console.print(
        f"Imported {summary['rows']} rows: {summary['linked']} identities linked, {summary['merged']} merges, "
        f"{summary['unchanged']} rows already so; {len(errors) + len(summary['errors'])} problems."
    )


def forget(
    identity: str = typer.Argument(..., help="An email address, another identity, or a member id"),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation"),
    actor: str = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Erase a person (right to be forgotten): events, identities, raw payloads, outcomes; clear the CRM."""
    from engagement.handlers import crm_sync
    from engagement.settings import Settings

    ref = _ref(identity)
    if not yes and not typer.confirm(f"Erase everything known about {ref} (and clear their CRM fields)?"):
        err.print("Nothing was erased.")
        raise typer.Exit(1)
    crm = crm_sync.crm_adapter(Settings.from_env())
    with _Session() as s:
        try:
            report = s.people.forget(ref, _actor(actor), s.now, crm=crm)
        except RuntimeError as error:
            err.print(f"[red]{error}[/]. Nothing was deleted; run the command again once the CRM answers.")
            raise typer.Exit(1) from None
    where = os.environ.get("CRM_PROVIDER") or Settings.from_env().crm_provider
    console.print(
        f"Forgot {len(report.member_ids)} member record(s): {report.events} events, {report.raw_items} raw payload "
        f"chunks, {report.identities} identities, {report.outcomes} outcomes, {report.sync_items} sync items; "
        f"CRM ({where}): {report.crm}. The audit trail keeps that it happened, with no personal data."
    )
