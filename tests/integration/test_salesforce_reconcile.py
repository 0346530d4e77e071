"""After a Salesforce outage the reconcile job brings Salesforce fully up to date; a second run costs no call.

Members are written to the members table on the moto endpoint and its stream is handed to the CRM sync
handler by the local stream pump (batches of 200, as deployed for Salesforce) while every data-API request
answers 503 SERVER_UNAVAILABLE, so the stream gives up. Once Salesforce is back, `crm_reconcile.reconcile`
pushes every member at its current version, with one Task for the member promoted during the outage; run
again, it finds everything synced and sends nothing. Salesforce is the mock transport of
tests/unit/test_salesforce.py (answers shaped as Salesforce documents them).
"""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from engagement.adapters.dynamo import to_item
from engagement.handlers import crm_reconcile, crm_sync
from engagement.local.stack import StreamPump
from tests.unit.test_salesforce import CREATE_PATH, OWNER, UPSERT_PATH, FakeSalesforce, salesforce

UNAVAILABLE = httpx.Response(
    503, json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "The server is temporarily unavailable"}]
)


pytestmark = pytest.mark.usefixtures("no_backoff_waits")


def put_member(client, n: int, tier: str = "Active", score: str = "40.0", version: int = 3) -> None:
    item = {
        "member_id": f"m{n:04d}",
        "name": f"member{n}",
        "email": f"member{n}@example.com",
        "score": Decimal(score),
        "tier": tier,
        "version": version,
        "event_count": 4,
        "tier_changed_at": "2026-12-01T11:00:00+00:00",
        "last_activity_at": "2026-11-30T09:00:00+00:00",
    }
    client.put_item(TableName="engagement-members", Item=to_item(item))


def pump(stack, crm, deps, retries: int) -> StreamPump:
    handler = lambda event, context: crm_sync.sync(event, context, crm, deps)  # noqa: E731
    return StreamPump(stack, handler, batch_size=200, retries=retries)


def test_outage_then_reconcile_brings_salesforce_fully_up_to_date_and_a_second_run_makes_no_call(
    stack, client, sync_deps
):
    # Given Salesforce's data API down (every call 503) while 100 members change; the stream gives up;
    fake = FakeSalesforce()
    fake.script = [UNAVAILABLE] * 1000
    adapter = salesforce(fake)
    for n in range(100):
        put_member(client, n, score=f"{40 + n / 10:.1f}")  # m0099: 49.9
    assert pump(stack, adapter, sync_deps, retries=1).drain() == 100
    # and m0005 is promoted to Power User during the outage (version 4).
    put_member(client, 5, "Power User", "95", version=4)
    pump(stack, adapter, sync_deps, retries=0).drain()
    # Salesforce was asked (two deliveries, then one, each call tried 6 times) and saved nothing.
    assert [r.url.path for r in fake.data_requests()] == [UPSERT_PATH] * 18
    assert len(fake.script) == 1000 - 18
    assert fake.records == {} and fake.tasks == []

    # When Salesforce is back and the reconcile job runs;
    fake.script.clear()
    fake.requests.clear()
    summary = crm_reconcile.reconcile(adapter, sync_deps)

    # Then all 100 members land in one collection upsert, plus the owner query and the create for m0005's task;
    assert summary.as_dict() == {"scanned": 100, "already_synced": 0, "pushed": 100, "failed": 0, "calls": 3}
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("PATCH", UPSERT_PATH),
        ("GET", "/services/data/v66.0/query"),
        ("POST", CREATE_PATH),
    ]
    assert len(json.loads(fake.requests[0].content)["records"]) == 100
    # every member is in Salesforce at its current values;
    assert sorted(fake.records) == [f"m{n:04d}" for n in range(100)]
    promoted = fake.records["m0005"]
    assert promoted["Community_Tier__c"] == "Power User" and promoted["Community_Score__c"] == 95
    assert fake.records["m0099"] == {
        "Id": fake.records["m0099"]["Id"],
        "OwnerId": OWNER,
        "Community_Member_Id__c": "m0099",
        "Email": "member99@example.com",
        "LastName": "member99",
        "Community_Score__c": 49.9,
        "Community_Tier__c": "Active",
        "Community_Tier_Changed_At__c": "2026-12-01T11:00:00.000Z",
        "Community_Last_Activity_At__c": "2026-11-30T09:00:00.000Z",
    }
    # the promotion made exactly one Task, on m0005's contact, for its owner;
    (task,) = fake.tasks
    assert task["WhoId"] == promoted["Id"] and task["OwnerId"] == OWNER
    # and the sync state holds each member's current version.
    states = sync_deps.sync.states("salesforce", [f"m{n:04d}" for n in range(100)])
    assert {m for m, s in states.items() if s.version == 3} == {f"m{n:04d}" for n in range(100)} - {"m0005"}
    assert states["m0005"].version == 4

    # When the reconcile runs again: nothing is due, and Salesforce is not called at all.
    fake.requests.clear()
    again = crm_reconcile.reconcile(adapter, sync_deps)
    assert again.as_dict() == {"scanned": 100, "already_synced": 100, "pushed": 0, "failed": 0, "calls": 0}
    assert fake.requests == [] and len(fake.tasks) == 1
