"""`engagement backfill`: import a platform's history through the scheduled pollers' own code."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from engagement.poller_settings import PLATFORMS

EXIT_FAILED = 1
EXIT_NOT_CONFIGURED = 2


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"--since must be a date such as 2026-01-31 (or an ISO 8601 time), not {value!r}"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment > datetime.now(UTC):
        raise typer.BadParameter("--since must not be in the future")
    return moment


def backfill(
    platform: str = typer.Argument(..., help=f"One of: {', '.join(PLATFORMS)}"),
    since: str = typer.Option(..., "--since", help="Import activity from this date on (YYYY-MM-DD or ISO 8601)"),
    max_pages: int = typer.Option(10_000, "--max-pages", min=1, help="Stop after this many pages (resume later)"),
    deployed: bool = typer.Option(
        False, "--deployed", help="Write to the tables named by MEMBERS_TABLE etc. with your AWS credentials"
    ),
) -> None:
    """Import history since a date, with a progress bar; run it again to resume after an interruption.

    The backfill keeps its own cursors (`backfill:<date>:<platform>:<stream>`) in the cursors table, so
    a second run with the same --since continues where the first stopped, and it never moves the
    schedule's cursors. Items the schedule already stored are recognised and count once.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from engagement.adapters.polling import Budget
    from engagement.handlers import ingest
    from engagement.handlers.pollers import build_poller
    from engagement.local.cli import _existing_stack, _logs_to_stderr, console, err

    if platform not in PLATFORMS:
        err.print(f"[red]unknown platform {platform!r}[/]; choose one of: {', '.join(PLATFORMS)}")
        raise typer.Exit(EXIT_NOT_CONFIGURED)
    start = _since(since)
    _logs_to_stderr()
    stack = None if deployed else _existing_stack()
    try:
        deps = ingest.default_dependencies()
        poller, client = build_poller(
            platform, deps, Budget(max_pages), start_at=start, cursor_prefix=f"backfill:{start.date().isoformat()}:"
        )
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[counts]}"))
        with client, Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
            tasks: dict[str, int] = {}

            def advance(stream: object, page: object) -> None:
                name = f"{platform} {stream.stream}"  # type: ignore[attr-defined]
                counts = f"{stream.pages} pages, {stream.stored} stored, {stream.duplicates} seen before, {stream.ignored} ignored"  # type: ignore[attr-defined]  # noqa: E501
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=None, counts=counts)
                progress.update(tasks[name], counts=counts, advance=1)

            summary = poller.run(progress=advance)
    finally:
        if stack is not None:
            stack.stop()
    if summary.status == "not_configured":
        err.print(f"[red]{platform} is not configured:[/] {summary.reason}")
        raise typer.Exit(EXIT_NOT_CONFIGURED)
    for stream in summary.streams:
        line = f"{platform} {stream.stream}: {stream.status}, {stream.pages} pages, {stream.stored} stored"
        console.print(line + (f" ({stream.error})" if stream.error else ""))
    if summary.status == "failed":
        err.print("[red]Some streams failed;[/] run the same command again to resume from the last stored page.")
        raise typer.Exit(EXIT_FAILED)
    if summary.status == "partial":
        console.print("Stopped before the present (page limit); run the same command again to continue.")
