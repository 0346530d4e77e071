"""The main job end to end: signed HTTP deliveries -> DynamoDB (moto server) -> stream -> CRM."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import stamina

from engagement.domain import scoring, taxonomy
from engagement.handlers import crm_sync, discourse_webhook, github_webhook, ingest
from engagement.handlers.recalc import recalculate
from engagement.local.server import make_server
from engagement.local.stack import StreamPump
from tests.conftest import discourse_headers, github_headers, github_push
from tests.hubspot_fake import FakeHubSpot
from tests.unit.test_crm_sync import hubspot

NOW = datetime.now(UTC)


def iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def pr(number: int, login: str, user_id: int, days_ago: float) -> dict:
    user = {"login": login, "id": user_id, "type": "User"}
    return {
        "action": "opened",
        "number": number,
        "sender": user,
        "repository": {"id": 1, "full_name": "acme/sdk"},
        "pull_request": {"id": 10_000 + number, "number": number, "user": user, "created_at": iso(days_ago)},
    }


@pytest.fixture
def server(stack, monkeypatch):
    monkeypatch.setattr(github_webhook, "_deps", None)
    monkeypatch.setattr(discourse_webhook, "_deps", None)
    http = make_server(0)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()


def post(base: str, platform: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base}/webhooks/{platform}", content=body, headers=headers, timeout=30)


def test_deliveries_become_scored_members_in_the_crm(stack, server, context):
    stamina.set_testing(True, attempts=3)
    # Ana: a Discourse account with an email, a GitHub push linking the same email, 8 PRs.
    user = json.dumps({"user": {"id": 5, "username": "ana", "email": "Ana@Example.com"}}).encode()
    assert post(server, "discourse", user, discourse_headers("user_created", "user", user)).status_code == 200
    push = json.dumps(github_push("ana-gh", 77, "ana@example.com")).encode()
    assert post(server, "github", push, github_headers("push", push)).status_code == 202
    for n in range(8):
        body = json.dumps(pr(n, "ana-gh", 77, days_ago=n + 1)).encode()
        response = post(server, "github", body, github_headers("pull_request", body))
        assert response.status_code == 202, response.text
    bot = json.dumps(pr(99, "renovate[bot]", 2, 1)).encode()
    assert post(server, "github", bot, github_headers("pull_request", bot)).json()["status"] == "ignored"

    # Expected: sum of 20 * 2**(-age/90) for ages 1..8 days, about 150.6: Champion.
    expected = sum(20 * 2 ** (-(n + 1) / 90) for n in range(8))
    assert expected > 150

    fake = FakeHubSpot()
    sync_deps = crm_sync.default_dependencies()
    pump = StreamPump(stack, lambda event, ctx: crm_sync.sync(event, ctx, hubspot(fake), sync_deps))
    pump.drain()

    upserts = [item for call in fake.calls("/crm/v3/objects/contacts/batch/upsert") for item in call["inputs"]]
    final = upserts[-1]
    assert final["id"] == "ana@example.com"
    assert final["properties"]["community_tier"] == "Champion"
    assert float(final["properties"]["community_score"]) == pytest.approx(expected, abs=0.05)
    tasks = [task for call in fake.calls("/crm/v3/objects/tasks/batch/create") for task in call["inputs"]]
    assert [t["properties"]["hs_task_subject"].split(":")[0] for t in tasks] == ["Community Champion"]
    assert all(item["id"] == "ana@example.com" for item in upserts)  # the bot never reached the CRM

    # A quiet year later the recalculation drops Ana's tier and the CRM hears about it once.
    store = ingest.default_dependencies().store
    summary = recalculate(store, NOW + timedelta(days=365))
    assert (summary.scanned, summary.written, summary.tier_changes) == (1, 1, 1)
    pump.drain()
    last = fake.calls("/crm/v3/objects/contacts/batch/upsert")[-1]["inputs"][0]["properties"]
    # 20 * 2**(-(365 + age)/90) summed: about 9.2, so Lurker.
    later = sum(20 * 2 ** (-(365 + n + 1) / 90) for n in range(8))
    assert float(last["community_score"]) == pytest.approx(later, abs=0.01)
    assert last["community_tier"] == "Lurker"

    # Recalculating again at the same moment writes nothing and costs the CRM nothing.
    calls_before = len(fake.requests)
    assert recalculate(store, NOW + timedelta(days=365)).written == 0
    pump.drain()
    assert len(fake.requests) == calls_before


def test_concurrent_events_for_one_member_lose_no_update(deps):
    # 40 PRs for one person posted from 8 threads at once: the stored score equals the definition.
    tax = taxonomy.build()
    ages = [i * 0.7 for i in range(40)]

    def send(i: int) -> int:
        body = json.dumps(pr(i, "busy", 55, ages[i])).encode()
        event = {"headers": github_headers("pull_request", body), "body": body.decode(), "isBase64Encoded": False}
        return ingest.handle(github_webhook.PLATFORM, event, deps)["statusCode"]

    deps.clock.now = NOW
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(send, range(40))) == {202}
    (member,) = list(deps.store.scan_members())
    assert member["event_count"] == 40
    half_life = tax.actions["submit_pr"].half_life_seconds
    events = [(20.0, half_life, datetime.fromisoformat(iso(age))) for age in ages]
    at = NOW + timedelta(days=3)
    assert scoring.score_at(scoring.accumulators_of(member), at) == pytest.approx(
        scoring.naive_score(events, at), rel=1e-9
    )
    assert len(deps.store.events_of(member["member_id"])) == 40


def test_back_dated_event_after_newer_ones_is_exact(deps):
    deps.clock.now = NOW
    for i, age in enumerate([1, 2, 400, 0.5]):  # the third arrives late and is more than a year old
        body = json.dumps(pr(i, "late", 66, age)).encode()
        event = {"headers": github_headers("pull_request", body), "body": body.decode()}
        assert ingest.handle(github_webhook.PLATFORM, event, deps)["statusCode"] == 202
    (member,) = list(deps.store.scan_members())
    expected = sum(20 * 2 ** (-age / 90) for age in [1, 2, 400, 0.5])
    assert float(member["score"]) == pytest.approx(expected, rel=1e-9)
    assert member["last_activity_at"].startswith(iso(0.5)[:19])


def test_the_same_delivery_racing_itself_is_stored_once(deps):
    # GitHub and a proxy both retrying at once: six copies of one delivery arrive together.
    deps.clock.now = NOW
    body = json.dumps(pr(1, "racer", 88, 1)).encode()
    headers = github_headers("pull_request", body, delivery="same-delivery")

    def send(_: int) -> str:
        event = {"headers": headers, "body": body.decode()}
        return json.loads(ingest.handle(github_webhook.PLATFORM, event, deps)["body"])["status"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(send, range(6)))
    assert statuses == ["duplicate"] * 5 + ["stored"]
    (member,) = list(deps.store.scan_members())
    assert member["event_count"] == 1
    assert float(member["score"]) == pytest.approx(20 * 2 ** (-1 / 90), rel=1e-6)
