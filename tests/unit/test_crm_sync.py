"""CRM sync: change detection from stream images, HubSpot over a mock transport, partial failures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import stamina
from boto3.dynamodb.types import TypeSerializer

from engagement.adapters.hubspot import HubSpot, TransientError, _backoff
from engagement.adapters.outbox import Outbox
from engagement.domain import taxonomy
from engagement.domain.crm import MemberChange, Skipped, change_from_images, latest_per_member
from engagement.handlers import crm_sync
from tests.hubspot_fake import FakeHubSpot as DocFake

BASE = "https://api.hubapi.test"
TAX = taxonomy.build()
serializer = TypeSerializer()


@pytest.fixture(autouse=True)
def no_backoff_waits():
    stamina.set_testing(True, attempts=6)
    yield
    stamina.set_testing(False)


def member(member_id="m1", email="ana@example.com", score=90.0, tier="Power User", version=2, **extra):
    item = {
        "member_id": member_id,
        "name": "ana",
        "score": score,
        "tier": tier,
        "version": version,
        "tier_changed_at": "2026-12-01T12:00:00+00:00",
        "last_activity_at": "2026-11-30T12:00:00+00:00",
        "event_count": 5,
        **extra,
    }
    if email:
        item["email"] = email
    return item


def record(seq: str, old: dict | None, new: dict | None, event_name="MODIFY") -> dict[str, Any]:
    from decimal import Decimal

    def image(values):
        return {k: serializer.serialize(Decimal(str(v)) if isinstance(v, float) else v) for k, v in values.items()}

    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1764590400.0,
        "Keys": {"member_id": {"S": (new or old)["member_id"]}},
        "SequenceNumber": seq,
        "SizeBytes": 200,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new:
        dynamodb["NewImage"] = image(new)
    if old:
        dynamodb["OldImage"] = image(old)
    return {
        "eventID": seq,
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/engagement-members/stream/2026-12-01",
    }


class FakeHubSpot:
    """Answers as HubSpot documents: batch upsert returns results with the contact's properties."""

    def __init__(self, script: list[Any] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[httpx.Request] = []
        self.next_id = 1000

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, httpx.Response):
                return step
            if isinstance(step, Exception):
                raise step
        body = json.loads(request.content)
        if request.url.path == "/crm/v3/objects/contacts/batch/upsert":
            results = []
            for item in body["inputs"]:
                self.next_id += 1
                results.append(
                    {
                        "id": str(self.next_id),
                        "objectWriteTraceId": item.get("objectWriteTraceId"),
                        "properties": {**item["properties"]},
                        "new": True,
                        "archived": False,
                        "createdAt": "2026-12-01T12:00:00Z",
                        "updatedAt": "2026-12-01T12:00:00Z",
                    }
                )
            return httpx.Response(
                200,
                json={
                    "status": "COMPLETE",
                    "results": results,
                    "startedAt": "2026-12-01T12:00:00Z",
                    "completedAt": "2026-12-01T12:00:01Z",
                },
            )
        if request.url.path == "/crm/v3/objects/tasks":
            self.next_id += 1
            return httpx.Response(201, json={"id": str(self.next_id), "properties": body["properties"]})
        return httpx.Response(404, json={"status": "error", "message": "not found"})

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path]


def hubspot(fake: FakeHubSpot) -> HubSpot:
    return HubSpot("pat-test", BASE, client=httpx.Client(transport=httpx.MockTransport(fake)))


RATE_LIMITED = httpx.Response(
    429,
    headers={"Retry-After": "1", "Content-Type": "application/json"},
    json={
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "aedc0d29-ba1e-48e3-9fa0-9975c9131a7a",
        "policyName": "SECONDLY",
    },
)


# Change detection ---------------------------------------------------------------------------


def test_materialized_write_is_a_change_with_hubspot_properties():
    change = change_from_images(member(version=1, score=70.0, tier="Active"), member(), TAX)
    assert isinstance(change, MemberChange)
    assert change.properties() == {
        "community_score": "90.00",
        "community_tier": "Power User",
        "community_tier_changed_at": "2026-12-01T12:00:00.000Z",
        "community_last_activity_at": "2026-11-30T12:00:00.000Z",
    }
    assert change.entered_task_tier  # Active -> Power User


def test_accumulator_only_write_is_no_news():
    assert change_from_images(member(), member(a_7776000_0=12.5), TAX) is None


def test_member_without_email_is_skipped_with_a_reason():
    outcome = change_from_images(None, member(email=None), TAX)
    assert isinstance(outcome, Skipped) and "no email" in outcome.reason


def test_falling_or_sideways_moves_create_no_task():
    assert not change_from_images(member(tier="Champion", score=160.0, version=1), member(), TAX).entered_task_tier
    assert not change_from_images(
        member(tier="Casual", score=20.0, version=1), member(tier="Active", score=40.0), TAX
    ).entered_task_tier


def test_newest_image_per_member_wins_against_the_tier_before_the_batch():
    # One batch: Active -> Power User (v2), then Power User with a higher score (v3).
    entered = change_from_images(member(version=1, tier="Active", score=60.0), member(version=2), TAX)
    later = change_from_images(member(version=2), member(version=3, score=95.0), TAX)
    (only,) = latest_per_member([later, entered], TAX)
    assert only.version == 3 and only.score == 95.0
    assert only.previous_tier == "Active" and only.entered_task_tier
    assert only.task_body().startswith("ana moved from Active into the Power User community tier with a score of 95.0")
    assert "Last community activity: 2026-11-30 12:00 UTC." in only.task_body()


def test_no_task_when_the_batch_starts_and_ends_in_the_same_tier():
    up = change_from_images(member(version=1, tier="Power User"), member(version=2, tier="Champion", score=151.0), TAX)
    down = change_from_images(member(version=2, tier="Champion", score=151.0), member(version=3), TAX)
    (only,) = latest_per_member([up, down], TAX)
    assert only.tier == "Power User" and not only.entered_task_tier


def test_member_with_no_activity_is_not_pushed():
    outcome = change_from_images(None, member(event_count=0, tier="Lurker", score=0.0), TAX)
    assert isinstance(outcome, Skipped) and "no activity" in outcome.reason


# HubSpot ----------------------------------------------------------------------------------


def test_upsert_by_email_and_task_for_tier_entry():
    fake = DocFake()
    fake.contacts["ana@example.com"] = {"id": "1001", "properties": {"hubspot_owner_id": "83421"}}
    change = change_from_images(member(version=1, tier="Active", score=60.0), member(email=" Ana@Example.com "), TAX)
    result = hubspot(fake).push([change])
    assert result.pushed == {"m1"} and not result.failed and result.records == {"m1": "1001"}
    (upsert,) = fake.calls("/crm/v3/objects/contacts/batch/upsert")
    assert upsert == {
        "inputs": [
            {
                "idProperty": "email",
                "id": "ana@example.com",
                "objectWriteTraceId": "m1",
                "properties": {"email": "ana@example.com", **change.properties()},
            }
        ]
    }
    (owners,) = fake.calls("/crm/v3/objects/contacts/batch/read")
    assert owners == {"properties": ["hubspot_owner_id"], "inputs": [{"id": "1001"}]}
    (tasks,) = fake.calls("/crm/v3/objects/tasks/batch/create")
    (task,) = tasks["inputs"]
    assert task["associations"] == [
        {"to": {"id": "1001"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}
    ]
    assert task["properties"]["hubspot_owner_id"] == "83421"
    assert "Power User" in task["properties"]["hs_task_subject"]
    assert fake.requests[0].headers["Authorization"] == "Bearer pat-test"


def test_batches_hold_at_most_100_contacts():
    fake = FakeHubSpot()
    changes = [
        change_from_images(None, member(member_id=f"m{i}", email=f"u{i}@example.com", tier="Active", score=40.0), TAX)
        for i in range(250)
    ]
    result = hubspot(fake).push(changes)
    sizes = [len(call["inputs"]) for call in fake.calls("/crm/v3/objects/contacts/batch/upsert")]
    assert sizes == [100, 100, 50]
    assert len(result.pushed) == 250 and result.calls == 3


def test_429_is_retried_and_then_lands():
    fake = FakeHubSpot([RATE_LIMITED, RATE_LIMITED])
    change = change_from_images(None, member(tier="Active", score=40.0), TAX)
    result = hubspot(fake).push([change])
    assert result.pushed == {"m1"} and result.calls == 3


def test_retry_after_sets_the_backoff():
    assert _backoff(TransientError("429", retry_after=7.0)) == 7.0
    assert _backoff(TransientError("503")) is True
    assert _backoff(ValueError("x")) is False


def test_persistent_5xx_fails_the_batch_without_raising():
    fake = FakeHubSpot([httpx.Response(502, text="Bad Gateway")] * 6)
    change = change_from_images(None, member(tier="Active", score=40.0), TAX)
    result = hubspot(fake).push([change])
    assert not result.pushed and "502" in result.failed["m1"]


def test_contact_missing_from_a_2xx_answer_counts_as_failed():
    partial = httpx.Response(
        207,
        json={
            "status": "COMPLETE",
            "results": [{"id": "77", "properties": {"email": "a@example.com"}}],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid",
                    "context": {"ids": ["b@example.com"]},
                }
            ],
        },
    )
    fake = FakeHubSpot([partial])
    changes = [
        change_from_images(None, member(member_id=m, email=e, tier="Active", score=40.0), TAX)
        for m, e in (("ma", "a@example.com"), ("mb", "b@example.com"))
    ]
    result = hubspot(fake).push(changes)
    assert result.pushed == {"ma"} and set(result.failed) == {"mb"}


def test_400_is_not_retried():
    fake = FakeHubSpot(
        [
            httpx.Response(
                400,
                json={
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Duplicate IDs found in batch input",
                },
            )
        ]
    )
    change = change_from_images(None, member(tier="Active", score=40.0), TAX)
    result = hubspot(fake).push([change])
    assert "400" in result.failed["m1"] and len(fake.requests) == 1


# The stream handler -----------------------------------------------------------------------


@pytest.fixture
def sync_deps(stack, clock):
    import boto3

    from engagement.adapters.dynamo import Store
    from engagement.adapters.sync_state import SyncStore
    from engagement.settings import Settings

    settings = Settings.from_env()
    client = boto3.client("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1")
    return crm_sync.SyncDependencies(sync=SyncStore(settings, client), store=Store(settings, client), clock=clock)


def test_stream_batch_reports_failed_sequence_numbers(context, sync_deps):
    # ana lands, bo's contact is refused item by item; the record without email is skipped, not failed.
    partial = httpx.Response(
        207,
        json={
            "status": "COMPLETE",
            "results": [{"id": "5", "properties": {"email": "ana@example.com"}}],
            "numErrors": 1,
            "errors": [],
        },
    )
    fake = DocFake(faults={0: partial})
    event = {
        "Records": [
            record("100", member(version=1, tier="Active", score=60.0), member()),
            record("200", None, member(member_id="m2", email="bo@example.com", tier="Active", score=35.0), "INSERT"),
            record("300", None, member(member_id="m3", email=None, tier="Lurker", score=1.0), "INSERT"),
        ]
    }
    response = crm_sync.sync(event, context, hubspot(fake), sync_deps)
    assert response == {"batchItemFailures": [{"itemIdentifier": "200"}]}


def test_unchanged_records_cost_no_calls(context, sync_deps):
    fake = FakeHubSpot()
    event = {"Records": [record("1", member(), member(a_1_0=3.0))]}
    assert crm_sync.sync(event, context, hubspot(fake), sync_deps) == {"batchItemFailures": []}
    assert fake.requests == []


def test_outbox_writes_one_line_per_change(tmp_path):
    path = tmp_path / "out" / "outbox.jsonl"
    change = change_from_images(member(version=1, tier="Active", score=60.0), member(), TAX)
    result = Outbox(str(path)).push([change])
    assert result.pushed == {"m1"}
    (line,) = [json.loads(text) for text in path.read_text().splitlines()]
    assert line["email"] == "ana@example.com" and line["properties"]["community_tier"] == "Power User"
    assert line["task"]["subject"].startswith("Community Power User")


def test_hubspot_without_token_is_a_configuration_error(monkeypatch):
    from engagement.handlers.errors import NotConfigured
    from engagement.settings import Settings

    monkeypatch.delenv("HUBSPOT_TOKEN", raising=False)
    with pytest.raises(NotConfigured):
        crm_sync.crm_adapter(Settings.from_env({"CRM_PROVIDER": "hubspot"}))


def test_results_are_matched_by_trace_id_when_email_is_not_echoed():
    answer = httpx.Response(
        200,
        json={
            "status": "COMPLETE",
            "results": [{"id": "901", "objectWriteTraceId": "m1", "properties": {"hs_object_id": "901"}, "new": False}],
        },
    )
    fake = FakeHubSpot([answer])
    change = change_from_images(None, member(tier="Active", score=40.0), TAX)
    assert hubspot(fake).push([change]).pushed == {"m1"}
