"""POST /events: Standard Webhooks signing per source, batches of up to 100, answered item by item."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from engagement.handlers import events_endpoint, ingest
from tests.conftest import response_json, rest_event

KEY = b"blog-comments-test-key"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"the-forms-key").decode()


@pytest.fixture
def events_deps(deps, monkeypatch):
    monkeypatch.setenv("EVENTS_SOURCE_SECRETS", json.dumps({"blog": SECRET, "forms": OTHER_SECRET}))
    return deps


def sign(body: bytes, message_id: str, timestamp: int, key: bytes = KEY) -> str:
    # Written out from the Standard Webhooks spec (not through our code): base64 HMAC-SHA256 of "id.timestamp.body".
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_for(body: bytes, clock, source: str = "blog", key: bytes = KEY, message_id: str = "msg_1"):
    timestamp = int(clock.now.timestamp())
    return {
        "Content-Type": "application/json",
        "X-Event-Source": source,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(body, message_id, timestamp, key),
    }


def post(deps, body: bytes, headers: dict[str, str]):
    return ingest.handle(events_endpoint.PLATFORM, rest_event(body, headers, path="/events"), deps)


def item(n: int, **changes) -> dict:
    base = {
        "id": f"comment-{n}",
        "user_id": "reader-7",
        "email": "Reader7@Example.org",
        "name": "Ana Reader",
        "action_type": "create_content",
        "timestamp": "2026-11-30T12:00:00Z",
        "metadata": {"url": "https://blog.example.org/posts/42#c7"},
    }
    return {**base, **changes}


def batch_body(items) -> bytes:
    return json.dumps({"events": items}).encode()


def event_count(deps) -> int:
    return deps.store.client.scan(TableName=deps.settings.events_table, Select="COUNT")["Count"]


def test_a_signed_batch_is_stored_item_by_item(events_deps, clock):
    body = batch_body([item(1), item(2, action_type="refer")])
    response = post(events_deps, body, headers_for(body, clock))
    assert response["statusCode"] == 200
    answer = response_json(response)
    assert (answer["received"], answer["stored"], answer["rejected"]) == (2, 2, 0)
    first, second = answer["results"]
    assert first["status"] == "stored" and first["action"] == "create_content"
    assert first["event_id"] == "events:blog:comment-1"
    # 25 points (90-day half-life) and 30 points (120-day) each one day old at the fixed clock.
    assert second["score"] == pytest.approx(25 * 2 ** (-1 / 90) + 30 * 2 ** (-1 / 120), abs=1e-4)
    member = events_deps.store.get_member(first["member_id"])
    assert member["email"] == "reader7@example.org"


def test_a_mixed_batch_is_answered_item_by_item(events_deps, clock):
    body = batch_body(
        [
            item(1),
            item(1),  # the same id again in one batch
            item(2, action_type="teleport"),
            item(3, timestamp="yesterday"),
            item(4, email="not-an-address"),
            item(5, surprise=True),
            "not an object",
            item(6, timestamp="2026-12-09T00:00:00Z"),  # a week ahead of the clock
            item(7, action_type="react", timestamp="2026-11-30T12:00:00"),  # naive: read as UTC
        ]
    )
    answer = response_json(post(events_deps, body, headers_for(body, clock)))
    statuses = [(r["index"], r["status"]) for r in answer["results"]]
    assert statuses == [
        (0, "stored"),
        (1, "duplicate"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "rejected"),
        (6, "rejected"),
        (7, "rejected"),
        (8, "stored"),
    ]
    reasons = {r["index"]: r.get("reason", "") for r in answer["results"]}
    assert "action_type must be one of" in reasons[2]
    assert "not ISO 8601" in reasons[3]
    assert "email" in reasons[4]
    assert "unknown fields: surprise" in reasons[5]
    assert "JSON object" in reasons[6]
    assert "future" in reasons[7]
    assert (answer["stored"], answer["duplicate"], answer["rejected"]) == (2, 1, 6)
    assert event_count(events_deps) == 2
    assert events_deps.store.get_event("events:blog:comment-7")["occurred_at"].startswith("2026-11-30T12:00:00")


def test_resending_a_batch_changes_nothing(events_deps, clock):
    body = batch_body([item(1), item(2)])
    post(events_deps, body, headers_for(body, clock))
    again = response_json(post(events_deps, body, headers_for(body, clock, message_id="msg_2")))
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert event_count(events_deps) == 2


def test_the_same_item_id_from_two_sources_is_two_events(events_deps, clock):
    body = batch_body([item(1)])
    post(events_deps, body, headers_for(body, clock))
    answer = response_json(post(events_deps, body, headers_for(body, clock, source="forms", key=b"the-forms-key")))
    assert answer["results"][0]["status"] == "stored"
    assert answer["results"][0]["event_id"] == "events:forms:comment-1"


def test_a_batch_of_100_is_accepted_and_101_is_refused(events_deps, clock):
    hundred = batch_body([item(n) for n in range(100)])
    assert response_json(post(events_deps, hundred, headers_for(hundred, clock)))["stored"] == 100
    body = batch_body([item(n) for n in range(101)])
    response = post(events_deps, body, headers_for(body, clock))
    assert response["statusCode"] == 413
    answer = response_json(response)
    assert answer["error"] == "too_many_events" and "101" in answer["message"]
    assert event_count(events_deps) == 100


def test_a_bad_signature_is_refused_and_stores_nothing(events_deps, clock):
    body = batch_body([item(1)])
    headers = headers_for(body, clock, key=b"a-guess")
    response = post(events_deps, body, headers)
    assert response["statusCode"] == 401 and response_json(response)["error"] == "bad_signature"
    assert event_count(events_deps) == 0


def test_a_tampered_body_is_refused(events_deps, clock):
    body = batch_body([item(1)])
    headers = headers_for(body, clock)
    response = post(events_deps, batch_body([item(1, action_type="refer")]), headers)
    assert response["statusCode"] == 401


def test_a_signature_with_another_sources_secret_is_refused(events_deps, clock):
    body = batch_body([item(1)])
    response = post(events_deps, body, headers_for(body, clock, source="blog", key=b"the-forms-key"))
    assert response["statusCode"] == 401


@pytest.mark.parametrize("offset", [301, -301])
def test_a_stale_timestamp_is_refused(events_deps, clock, offset):
    body = batch_body([item(1)])
    headers = headers_for(body, clock)
    clock.now = clock.now + timedelta(seconds=offset)
    response = post(events_deps, body, headers)
    assert response["statusCode"] == 401 and response_json(response)["error"] == "stale_timestamp"
    assert event_count(events_deps) == 0


def test_one_matching_entry_among_several_signatures_is_enough(events_deps, clock):
    body = batch_body([item(1)])
    headers = headers_for(body, clock)
    headers["webhook-signature"] = "v1,bm90LWl0 v2,ignored " + headers["webhook-signature"]
    assert post(events_deps, body, headers)["statusCode"] == 200


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda h: h.pop("webhook-signature"), 401, "missing_signature"),
        (lambda h: h.pop("webhook-timestamp"), 401, "missing_timestamp"),
        (lambda h: h.pop("webhook-id"), 401, "missing_header"),
        (lambda h: h.pop("X-Event-Source"), 400, "missing_header"),
        (lambda h: h.update({"X-Event-Source": "Not A Source"}), 400, "bad_source"),
        (lambda h: h.update({"X-Event-Source": "unknown"}), 401, "unknown_source"),
        (lambda h: h.update({"Content-Type": "text/plain"}), 415, "unsupported_media_type"),
    ],
)
def test_bad_headers_are_refused(events_deps, clock, mutate, status, code):
    body = batch_body([item(1)])
    headers = headers_for(body, clock)
    mutate(headers)
    response = post(events_deps, body, headers)
    assert (response["statusCode"], response_json(response)["error"]) == (status, code)
    assert event_count(events_deps) == 0


@pytest.mark.parametrize(
    ("payload", "code"),
    [({"events": []}, "empty_batch"), ({"items": [1]}, "unexpected_shape"), ([1, 2], "malformed_body")],
)
def test_unreadable_batches_are_400(events_deps, clock, payload, code):
    body = json.dumps(payload).encode()
    response = post(events_deps, body, headers_for(body, clock))
    assert (response["statusCode"], response_json(response)["error"]) == (400, code)


def test_a_broken_secrets_configuration_is_our_500(events_deps, clock, monkeypatch):
    monkeypatch.setenv("EVENTS_SOURCE_SECRETS", "{not json")
    body = batch_body([item(1)])
    assert post(events_deps, body, headers_for(body, clock))["statusCode"] == 500
