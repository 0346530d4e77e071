"""Done when, for Salesforce: a stream batch of 250 changes with one per-item DUPLICATES_DETECTED.

The CRM sync handler runs with the real sync state (moto) and the Salesforce adapter over the mock
transport of tests/unit/test_salesforce.py (answers shaped as Salesforce documents them). The failed
item is reported by its sequence number with its reason, the others are marked synced, a redelivered
batch costs no further call and creates no second task, and the retried record lands once the
duplicate is resolved in Salesforce.
"""

from __future__ import annotations

import json

import boto3
import pytest

from engagement.handlers import crm_sync
from tests.unit.test_salesforce import CREATE_PATH, OWNER, UPSERT_PATH, FakeSalesforce, salesforce, stream_event

MEMBERS = [f"m{n:04d}" for n in range(250)]
DUPLICATE_SEQUENCE = f"{1007:021d}"


pytestmark = pytest.mark.usefixtures("no_backoff_waits")


def test_250_changes_with_one_duplicate_land_exactly_once(context, sync_deps, caplog):
    fake = FakeSalesforce()
    fake.duplicates.add("m0007")
    adapter = salesforce(fake)
    event = stream_event(250, champions={3, 7, 210})

    with caplog.at_level("WARNING", logger="engagement"):
        response = crm_sync.sync(event, context, adapter, sync_deps)

    # Only the duplicate's record is reported, by its sequence number, with Salesforce's reason in the log.
    assert response == {"batchItemFailures": [{"itemIdentifier": DUPLICATE_SEQUENCE}]}
    (logged,) = [r for r in caplog.records if r.getMessage() == "crm push failures"]
    assert set(logged.reasons) == {"m0007"}
    assert logged.reasons["m0007"].startswith("DUPLICATES_DETECTED: Use one of these records?")
    # 250 changes in two collections (200 + 50), one owner query and one create for the two tasks due.
    upserts = fake.data_requests("PATCH", UPSERT_PATH)
    assert [len(json.loads(r.content)["records"]) for r in upserts] == [200, 50]
    assert len(fake.data_requests("GET")) == 1
    assert len(fake.data_requests("POST", CREATE_PATH)) == 1
    assert sorted(t["WhoId"] for t in fake.tasks) == sorted([fake.records["m0003"]["Id"], fake.records["m0210"]["Id"]])
    assert {t["OwnerId"] for t in fake.tasks} == {OWNER}
    # The others are marked synced at version 2 with their Salesforce record; the duplicate is not.
    states = sync_deps.sync.states("salesforce", MEMBERS)
    assert {m for m, s in states.items() if s.version == 2} == set(MEMBERS) - {"m0007"}
    assert states["m0007"].version == -1
    assert states["m0003"].record_id == fake.records["m0003"]["Id"]

    # Lambda redelivers the batch from the failed record on: only the duplicate is sent again (one call).
    requests_before = len(fake.requests)
    retry = {"Records": [r for r in event["Records"] if r["dynamodb"]["SequenceNumber"] >= DUPLICATE_SEQUENCE]}
    assert crm_sync.sync(retry, context, adapter, sync_deps) == {
        "batchItemFailures": [{"itemIdentifier": DUPLICATE_SEQUENCE}]
    }
    assert [r.url.path for r in fake.requests[requests_before:]] == [UPSERT_PATH]
    assert len(json.loads(fake.requests[-1].content)["records"]) == 1

    # Someone merges the duplicate in Salesforce; the next retry lands it and creates its task, once.
    fake.duplicates.clear()
    assert crm_sync.sync(retry, context, adapter, sync_deps) == {"batchItemFailures": []}
    assert sync_deps.sync.states("salesforce", ["m0007"])["m0007"].version == 2
    assert len(fake.tasks) == 3
    assert fake.tasks[-1]["WhoId"] == fake.records["m0007"]["Id"]

    # The whole batch delivered again: nothing is due, no call is made, no task is repeated.
    requests_before = len(fake.requests)
    assert crm_sync.sync(event, context, adapter, sync_deps) == {"batchItemFailures": []}
    assert len(fake.requests) == requests_before
    assert len(fake.tasks) == 3


def test_through_the_members_stream_the_duplicate_is_parked_and_the_rest_land_once(stack, sync_deps):
    """250 members written to the table; the local stream pump delivers them in batches of 200 (as deployed for
    Salesforce) with 2 retries, then parks what still fails in the failure file (the SQS destination's stand-in)."""
    from decimal import Decimal

    from engagement.adapters.dynamo import to_item
    from engagement.local.stack import StreamPump, home

    client = boto3.client("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1")
    champions = {3, 7, 210}
    for n in range(250):
        item = {
            "member_id": f"m{n:04d}",
            "name": f"member{n}",
            "email": f"member{n}@example.com",
            "score": Decimal("160.0") if n in champions else Decimal("35.0"),
            "tier": "Champion" if n in champions else "Active",
            "version": 3,
            "event_count": 4,
            "tier_changed_at": "2026-12-01T12:00:00+00:00",
            "last_activity_at": "2026-11-30T12:00:00+00:00",
        }
        client.put_item(TableName="engagement-members", Item=to_item(item))
    fake = FakeSalesforce()
    fake.duplicates.add("m0007")
    adapter = salesforce(fake)

    pump = StreamPump(stack, lambda event, context: crm_sync.sync(event, context, adapter, sync_deps), batch_size=200)
    assert pump.drain() == 250

    # After its retries the batch is handed on from the failed record, as the event source mapping does (the SQS
    # destination gets that range): it starts at the duplicate; the records after it had landed already.
    parked = [json.loads(line)["dynamodb"]["Keys"]["member_id"]["S"] for line in (home() / "failures.jsonl").open()]
    assert parked == [f"m{n:04d}" for n in range(7, 200)]
    # First batch: 200 in one call; its two retries send only the duplicate; then the second batch of 50.
    upserts = fake.data_requests("PATCH", UPSERT_PATH)
    assert [len(json.loads(r.content)["records"]) for r in upserts] == [200, 1, 1, 50]
    # One task per champion that landed, never repeated by the retries.
    assert sorted(t["WhoId"] for t in fake.tasks) == sorted([fake.records["m0003"]["Id"], fake.records["m0210"]["Id"]])
    states = sync_deps.sync.states("salesforce", MEMBERS)
    assert {m for m, s in states.items() if s.version == 3} == set(MEMBERS) - {"m0007"}
