"""Outcomes from HubSpot: the signed webhook (v3) and the scheduled pull, linked to members by email."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

import boto3
import httpx
import pytest
import stamina

from engagement.adapters.dynamo import to_item
from engagement.adapters.hubspot import HubSpot, RateLimiter
from engagement.adapters.hubspot_inbound import HubSpotOutcomes
from engagement.adapters.outcomes import OutcomeStore
from engagement.adapters.sync_state import SyncStore
from engagement.domain.hubspot_inbound import canonical_uri
from engagement.handlers import hubspot_webhook
from engagement.settings import Settings
from tests.conftest import rest_event
from tests.hubspot_fake import FakeHubSpot, FakeTime

CLIENT_SECRET = "hs-client-secret-for-tests"
URL = "https://abc123.execute-api.us-east-1.amazonaws.com/dev/webhooks/hubspot"
NOW_MS = 1_796_126_400_000  # 2026-12-01T12:00:00Z


@pytest.fixture(autouse=True)
def no_backoff_waits():
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)


def v3(body: bytes, timestamp: str, uri: str = URL, method: str = "POST", secret: str = CLIENT_SECRET) -> str:
    # Written from HubSpot's guide, independently of the code under test.
    source = (method + uri + body.decode() + timestamp).encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def event_for(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    event = rest_event(body, headers, path="/webhooks/hubspot")
    event["requestContext"].update(
        {"domainName": "abc123.execute-api.us-east-1.amazonaws.com", "path": "/dev/webhooks/hubspot"}
    )
    return event


def signed(body: bytes, timestamp: int = NOW_MS - 1000, **overrides: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": v3(body, str(timestamp)),
        "X-HubSpot-Request-Timestamp": str(timestamp),
        "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/)",
    }
    headers.update(overrides)
    return headers


def hubspot_event(kind: str, object_id: int, event_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 2_404_571,
        "portalId": 62_515,
        "appId": 54_321,
        "occurredAt": NOW_MS - 5000,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM_UI",
        **extra,
    }


@pytest.fixture
def world(stack):
    client = boto3.client("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1")
    settings = Settings.from_env()
    # Community members known by email (identity items as the ingest pipeline writes them).
    for email, member_id in (("ana@example.com", "m-ana"), ("bo@example.com", "m-bo")):
        client.put_item(
            TableName="engagement-identities", Item=to_item({"key": f"email#{email}", "member_id": member_id})
        )
    fake = FakeHubSpot()
    fake.contacts["ana@example.com"] = {
        "id": "501",
        "properties": {
            "email": "Ana@Example.com",
            "lifecyclestage": "customer",
            "associatedcompanyid": "9001",
            "plan": "enterprise",
            "lastmodifieddate": "2026-12-01T11:00:00.000Z",
        },
    }
    fake.contacts["zed@example.org"] = {
        "id": "502",
        "properties": {
            "email": "zed@example.org",
            "lifecyclestage": "lead",
            "lastmodifieddate": "2026-12-01T11:01:00.000Z",
        },
    }
    fake.deals["7001"] = {
        "amount": "12500.50",
        "closedate": "2026-11-28T00:00:00Z",
        "deal_currency_code": "EUR",
        "dealstage": "closedwon",
        "hs_is_closed_won": "true",
        "hs_lastmodifieddate": "2026-12-01T11:30:00.000Z",
    }
    fake.deal_contacts["7001"] = ["501"]
    time = FakeTime()
    crm = HubSpot(
        "pat-test",
        "https://api.hubapi.test",
        client=httpx.Client(transport=httpx.MockTransport(fake)),
        limiter=RateLimiter([(100, 10.0), (10, 1.0)], clock=time, sleep=time.sleep),
        search_limiter=RateLimiter([(4, 1.0)], clock=time, sleep=time.sleep),
    )
    store = OutcomeStore(settings, client)
    outcomes = HubSpotOutcomes(
        crm,
        lambda email: (
            (
                client.get_item(TableName="engagement-identities", Key=to_item({"key": f"email#{email}"})).get("Item")
                or {}
            )
            .get("member_id", {})
            .get("S")
        ),
        store,
        plan_property="plan",
    )
    deps = hubspot_webhook.WebhookDependencies(
        settings=settings, outcomes=outcomes, secret=lambda name: CLIENT_SECRET, now_ms=lambda: NOW_MS
    )
    return {"fake": fake, "deps": deps, "store": store, "sync": SyncStore(settings, client), "time": time}


ANA_STATUS = {
    "member_id": "m-ana",
    "outcome_id": "hubspot:contact:501",
    "crm": "hubspot",
    "kind": "status",
    "lifecycle_stage": "customer",
    "plan": "enterprise",
    "contact_id": "501",
    "company_id": "9001",
    "updated_at": "2026-12-01T11:00:00.000+00:00",
}
ANA_DEAL = {
    "member_id": "m-ana",
    "outcome_id": "hubspot:deal:7001",
    "crm": "hubspot",
    "kind": "deal",
    "amount": Decimal("12500.50"),
    "currency": "EUR",
    "close_date": "2026-11-28",
    "contact_id": "501",
    "company_id": "9001",
    "updated_at": "2026-12-01T11:30:00.000+00:00",
}


def test_uri_escapes_are_decoded_as_hubspot_lists_them():
    assert canonical_uri("https://x.test/hook?a=b%3Ac%2Fd%40e%20f") == "https://x.test/hook?a=b:c/d@e%20f"


def test_signed_webhook_links_the_new_contact_and_its_won_deal_to_the_member(world):
    body = json.dumps(
        [
            hubspot_event("contact.creation", 501, 1),
            hubspot_event("contact.creation", 502, 2),  # not a community member
            hubspot_event("deal.propertyChange", 7001, 3, propertyName="dealstage", propertyValue="closedwon"),
            hubspot_event("contact.deletion", 503, 4),
        ]
    ).encode()
    response = hubspot_webhook.handle(event_for(body, signed(body)), world["deps"])
    assert response["statusCode"] == 200, response["body"]
    answer = json.loads(response["body"])
    assert (
        answer["linked"] == 1 and answer["unknown"] == 1 and answer["outcomes"] == 2 and answer["ignored_events"] == 1
    )
    assert world["store"].outcomes_of("m-ana") == [ANA_STATUS, ANA_DEAL]  # sorted by outcome_id
    assert world["store"].outcomes_of("m-bo") == []


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({"X-HubSpot-Signature-v3": ""}, 401, "invalid_signature"),
        ({"X-HubSpot-Signature-v3": "bm90IHRoZSByaWdodCBzaWduYXR1cmU="}, 401, "invalid_signature"),
        ({"X-HubSpot-Request-Timestamp": "yesterday"}, 400, "malformed_signature_header"),
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ],
)
def test_refused_requests_store_nothing(world, headers, status, error):
    body = json.dumps([hubspot_event("contact.creation", 501, 1)]).encode()
    response = hubspot_webhook.handle(event_for(body, signed(body, **headers)), world["deps"])
    assert response["statusCode"] == status and json.loads(response["body"])["error"] == error
    assert world["store"].outcomes_of("m-ana") == [] and world["fake"].requests == []


def test_a_replayed_delivery_older_than_five_minutes_is_refused(world):
    body = json.dumps([hubspot_event("contact.creation", 501, 1)]).encode()
    old = NOW_MS - 5 * 60 * 1000 - 1
    response = hubspot_webhook.handle(event_for(body, signed(body, timestamp=old)), world["deps"])
    assert response["statusCode"] == 401 and world["fake"].requests == []


def test_a_delivery_stamped_more_than_five_minutes_ahead_is_refused(world):
    body = json.dumps([hubspot_event("contact.creation", 501, 1)]).encode()
    ahead = NOW_MS + 5 * 60 * 1000 + 1
    response = hubspot_webhook.handle(event_for(body, signed(body, timestamp=ahead)), world["deps"])
    assert response["statusCode"] == 401 and world["fake"].requests == []


def test_a_body_signed_for_another_url_is_refused(world):
    body = json.dumps([hubspot_event("contact.creation", 501, 1)]).encode()
    headers = signed(body)
    headers["X-HubSpot-Signature-v3"] = v3(body, headers["X-HubSpot-Request-Timestamp"], uri="https://evil.test/hook")
    assert hubspot_webhook.handle(event_for(body, headers), world["deps"])["statusCode"] == 401


@pytest.mark.parametrize(
    "payload",
    [
        {"objectId": 1},
        [],
        ["x"],
        [{"subscriptionType": "contact.creation"}],
        [{"subscriptionType": "contact.creation", "objectId": True}],
    ],
)
def test_bodies_that_are_not_event_batches_are_400(world, payload):
    body = json.dumps(payload).encode()
    response = hubspot_webhook.handle(event_for(body, signed(body)), world["deps"])
    assert response["statusCode"] == 400 and json.loads(response["body"])["error"] == "invalid_body"


def test_more_than_100_events_or_an_oversized_body_is_refused(world):
    body = json.dumps([hubspot_event("contact.creation", 501, i) for i in range(101)]).encode()
    assert hubspot_webhook.handle(event_for(body, signed(body)), world["deps"])["statusCode"] == 400
    big = b"[" + b" " * (world["deps"].settings.max_body_bytes + 1) + b"]"
    assert hubspot_webhook.handle(event_for(big, signed(big)), world["deps"])["statusCode"] == 413


def test_hubspot_unreachable_is_503_so_hubspot_retries(world):
    world["fake"].down = True
    body = json.dumps([hubspot_event("contact.creation", 501, 1)]).encode()
    response = hubspot_webhook.handle(event_for(body, signed(body)), world["deps"])
    assert response["statusCode"] == 503 and world["store"].outcomes_of("m-ana") == []


def test_missing_client_secret_is_our_fault(world):
    world["deps"].secret = lambda name: None
    body = json.dumps([hubspot_event("contact.creation", 501, 1)]).encode()
    assert hubspot_webhook.handle(event_for(body, signed(body)), world["deps"])["statusCode"] == 500


def test_scheduled_pull_stores_outcomes_within_the_search_limit_and_keeps_cursors(world):
    outcomes, sync, fake, time = world["deps"].outcomes, world["sync"], world["fake"], world["time"]
    summary = outcomes.pull(sync, None)
    assert summary.outcomes == 2 and summary.linked == 1 and summary.unknown == 1
    assert sorted(o["outcome_id"] for o in world["store"].outcomes_of("m-ana")) == [
        "hubspot:contact:501",
        "hubspot:deal:7001",
    ]
    # Cursors: the newest modification seen, in epoch milliseconds.
    assert sync.cursor("hubspot:contacts") == "1796122860000"  # 2026-12-01T11:01:00Z
    assert sync.cursor("hubspot:deals") == "1796124600000"  # 2026-12-01T11:30:00Z
    deal_search = next(
        s
        for s in fake.searches
        if {"propertyName": "hs_is_closed_won", "operator": "EQ", "value": "true"} in s["filterGroups"][0]["filters"]
    )
    assert deal_search["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]

    # A second pull asks only for changes since the cursors; ten more pulls never exceed 4 searches a second.
    fake.searches.clear()
    start = time.now
    for _ in range(10):
        outcomes.pull(sync, None)
    assert fake.searches[0]["filterGroups"][0]["filters"][-1]["value"] == "1796122860000"
    assert len(fake.searches) == 20 and time.now - start >= (20 - 4) / 4


def test_a_deal_won_by_a_members_company_reaches_the_member(world):
    fake = world["fake"]
    fake.contacts["bo@example.com"] = {
        "id": "503",
        "properties": {
            "email": "bo@example.com",
            "lifecyclestage": "customer",
            "lastmodifieddate": "2026-12-01T09:00:00Z",
        },
    }
    fake.deals["7002"] = {
        "amount": "4000",
        "closedate": "2026-11-30T15:00:00Z",
        "deal_currency_code": "USD",
        "dealstage": "closedwon",
        "hs_is_closed_won": "true",
        "hs_lastmodifieddate": "2026-12-01T11:45:00.000Z",
    }
    fake.deal_companies["7002"] = ["9100"]  # no contact on the deal itself
    fake.company_contacts["9100"] = ["503"]
    body = json.dumps(
        [hubspot_event("deal.propertyChange", 7002, 9, propertyName="dealstage", propertyValue="closedwon")]
    ).encode()
    response = hubspot_webhook.handle(event_for(body, signed(body)), world["deps"])
    assert response["statusCode"] == 200, response["body"]
    assert world["store"].outcomes_of("m-bo") == [
        {
            "member_id": "m-bo",
            "outcome_id": "hubspot:deal:7002",
            "crm": "hubspot",
            "kind": "deal",
            "amount": Decimal("4000"),
            "currency": "USD",
            "close_date": "2026-11-30",
            "contact_id": "503",
            "company_id": "9100",
            "updated_at": "2026-12-01T11:45:00.000+00:00",
        }
    ]


def test_http_api_v2_events_are_verified_over_their_raw_path(world):
    from tests.conftest import http_api_event

    body = json.dumps([hubspot_event("contact.creation", 501, 1)]).encode()
    event = http_api_event(body, signed(body), path="/dev/webhooks/hubspot")
    event["requestContext"]["domainName"] = "abc123.execute-api.us-east-1.amazonaws.com"
    response = hubspot_webhook.handle(event, world["deps"])
    assert response["statusCode"] == 200, response["body"]


def test_the_pull_requeries_from_the_newest_time_seen_past_the_search_cap(world, monkeypatch):
    from engagement.adapters import hubspot_inbound

    world["fake"].contacts["cy@example.net"] = {
        "id": "504",
        "properties": {"email": "cy@example.net", "lastmodifieddate": "2026-12-01T11:02:00.000Z"},
    }
    monkeypatch.setattr(hubspot_inbound, "SEARCH_PAGE", 1)
    monkeypatch.setattr(hubspot_inbound, "SEARCH_RESULT_CAP", 2)  # HubSpot's is 10,000: two pages here
    rows = list(world["deps"].outcomes.search("contacts", [], ["email"], "lastmodifieddate", 0))
    # 501 (11:00), 502 (11:01), then the cap: a new query from 11:01 (inclusive) gives 502 again and 504 (11:02).
    assert [r["id"] for r in rows] == ["501", "502", "502", "504"]
    starts = [s["filterGroups"][0]["filters"][-1]["value"] for s in world["fake"].searches]
    assert starts == ["0", "0", "1796122860000", "1796122860000"]
