"""`engagement demo`: the main job end to end on invented deliveries, over real HTTP and a real stream."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import track

from engagement.domain.signatures import sign
from engagement.local import demo_community, demo_data
from engagement.local import members as view
from engagement.local.stack import LOCAL_SECRETS, LocalStack, StreamPump, home


def run_demo(console: Console) -> int:
    outbox = home() / "demo-outbox.jsonl"
    outbox.parent.mkdir(parents=True, exist_ok=True)
    outbox.unlink(missing_ok=True)
    os.environ["OUTBOX_PATH"] = str(outbox)
    os.environ["CRM_PROVIDER"] = "outbox"  # the demo never writes to a real CRM
    for name, value in LOCAL_SECRETS.items():
        os.environ[name] = value

    # Imported after the environment is set: handlers read it on first use.
    from engagement.handlers import crm_sync, ingest
    from engagement.handlers.recalc import recalculate
    from engagement.local.server import make_server

    stack = LocalStack().start(prefer_running=False)
    server = make_server(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    console.print(
        f"Local stack: DynamoDB at {stack.endpoint}, webhooks at {base}/webhooks/{{github,discourse,slack}} "
        f"and {base}/events"
    )
    try:
        deliveries = demo_data.build()
        outcomes: Counter[str] = Counter()
        notes: list[tuple[str, str]] = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for delivery in track(deliveries, description="Posting signed deliveries", console=console):
                body = delivery.body()
                secret = LOCAL_SECRETS[f"{delivery.platform.upper()}_WEBHOOK_SECRET"]
                header = "X-Hub-Signature-256" if delivery.platform == "github" else "X-Discourse-Event-Signature"
                response = client.post(
                    f"/webhooks/{delivery.platform}",
                    content=body,
                    headers={**delivery.headers, header: sign(secret, body)},
                )
                answer = response.json()
                status = answer.get("status", str(response.status_code))
                outcomes[f"{response.status_code} {status}"] += 1
                if status != "stored":
                    notes.append((delivery.note, answer.get("reason") or answer.get("message") or status))
            demo_community.post_all(client, demo_data.datetime.now(demo_data.UTC), outcomes, notes)
            merged = _resolve_tomas(client, outcomes)

        pump = StreamPump(stack, crm_sync.lambda_handler)
        pump.drain()
        summary = recalculate(ingest.default_dependencies().store, demo_data.datetime.now(demo_data.UTC))
        pump.drain()

        console.print("Deliveries: " + ", ".join(f"{count} × {label}" for label, count in sorted(outcomes.items())))
        for note, reason in notes:
            console.print(f"  [dim]{note}:[/] {reason}")
        console.print(
            f"Recalculated: {summary.scanned} members, {summary.written} written, {summary.tier_changes} tier changes."
        )
        rows = view.sorted_rows(ingest.default_dependencies().store.scan_members())
        _report_outbox(console, outbox)
        unreachable = [row["name"] for row in rows if not row["email"]]
        if unreachable:
            console.print(f"Not pushed to the CRM (no email address known yet): {', '.join(unreachable)}")
        for line in merged:
            console.print(line)
        # The members table comes last: it is what the run is for.
        console.print(view.as_table(rows, title="Community members"))
        return 0
    finally:
        server.shutdown()
        stack.stop()


def _resolve_tomas(client: httpx.Client, outcomes: Counter[str]) -> list[str]:
    """Tomás joins the forum under the handle he uses on GitHub; the operator merges him on the suggestion."""
    from engagement.adapters.identity_store import IdentityStore
    from engagement.handlers import ingest

    now = demo_data.datetime.now(demo_data.UTC)
    user = {"user": {"id": 318, "username": "tortega", "name": "Tomás Ortega", "email": "tomas.ortega@example.io"}}
    answer = {
        "post": {
            "id": 9318,
            "user_id": 318,
            "username": "tortega",
            "post_number": 1,  # a new topic: his first question
            "post_type": 1,
            "topic_id": 9300,
            "created_at": (now - demo_data.timedelta(days=1)).isoformat(),
        }
    }
    for n, (kind, event, payload) in enumerate((("user", "user_created", user), ("post", "post_created", answer))):
        body = json.dumps(payload).encode()
        headers = {
            "X-Discourse-Instance": demo_data.FORUM,
            "X-Discourse-Event-Id": str(90_000 + n),
            "X-Discourse-Event-Type": kind,
            "X-Discourse-Event": event,
            "Content-Type": "application/json",
            "X-Discourse-Event-Signature": sign(LOCAL_SECRETS["DISCOURSE_WEBHOOK_SECRET"], body),
        }
        response = client.post("/webhooks/discourse", content=body, headers=headers)
        outcomes[f"{response.status_code} {response.json().get('status')}"] += 1

    people = IdentityStore(ingest.default_dependencies().store)
    from engagement.adapters.config_source import current_taxonomy

    taxonomy = current_taxonomy()
    lines = []
    for suggestion in people.suggestions(taxonomy.identity):
        reasons = "; ".join(r.text for r in suggestion.reasons)
        lines.append(f"Identity suggestion ({suggestion.confidence:.2f}): {reasons}")
        if "same_handle" in suggestion.rules:
            result = people.merge(
                suggestion.second, suggestion.first, "operator:demo", now, taxonomy, why="confirmed: same person"
            )
            lines.append(
                f"  merged by the operator (engagement identities merge): one member, score {result['score']:.1f}, "
                f"tier {result['tier']}; `engagement identities unmerge` would undo it exactly"
            )
    return lines


def _report_outbox(console: Console, outbox: Path) -> None:
    lines = [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []
    tasks = [line["task"]["subject"] for line in lines if line.get("task")]
    console.print(
        f"CRM updates: {len(lines)} contact updates and {len(tasks)} tasks written to {outbox}. The demo never "
        "writes to a real CRM; `engagement serve` with HUBSPOT_TOKEN set sends changes to HubSpot."
    )
    for subject in tasks:
        console.print(f"  task: {subject}")
