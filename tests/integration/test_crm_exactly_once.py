"""Exactly-once CRM effect through the real stream: faults, redelivery, outage and reconcile, replay.

Members are written to the members table on the moto endpoint; its stream records are handed to the
CRM sync handler in batches of 100 by the local stream pump, as the event source mapping does. HubSpot
is a mock transport answering in HubSpot's documented shapes (tests/hubspot_fake.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import boto3
import httpx
import pytest

from engagement.adapters.dynamo import to_item
from engagement.adapters.hubspot import HubSpot, RateLimiter
from engagement.handlers import crm_reconcile, crm_sync
from engagement.local.stack import StreamPump
from tests.hubspot_fake import FakeHubSpot, FakeTime, rate_limited, server_error

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
TASKS = "/crm/v3/objects/tasks/batch/create"
READ = "/crm/v3/objects/contacts/batch/read"


pytestmark = pytest.mark.usefixtures("no_backoff_waits")


def hubspot(fake: FakeHubSpot) -> HubSpot:
    time = FakeTime()
    return HubSpot(
        "pat-test",
        "https://api.hubapi.test",
        client=httpx.Client(transport=httpx.MockTransport(fake)),
        limiter=RateLimiter([(100, 10.0), (10, 1.0)], clock=time, sleep=time.sleep),
        search_limiter=RateLimiter([(4, 1.0)], clock=time, sleep=time.sleep),
    )


def member_item(i: int, tier: str = "Active", score: float = 40.0, version: int = 3) -> dict[str, Any]:
    return {
        "member_id": f"m{i:03d}",
        "name": f"user{i}",
        "email": f"user{i}@example.com",
        "score": Decimal(str(score)),
        "tier": tier,
        "version": version,
        "event_count": 4,
        "tier_changed_at": "2026-12-01T11:00:00+00:00",
        "last_activity_at": "2026-11-30T09:00:00+00:00",
    }


def put_members(client, items: list[dict[str, Any]]) -> None:
    for item in items:
        client.put_item(TableName="engagement-members", Item=to_item(item))


def put_event(client, member_id: str, event_id: str, action: str, points: int, occurred_at: str) -> None:
    client.put_item(
        TableName="engagement-events",
        Item=to_item(
            {
                "event_id": event_id,
                "member_id": member_id,
                "action": action,
                "points": points,
                "occurred_at": occurred_at,
            }
        ),
    )


def pump(stack, crm, deps, retries: int = 2) -> StreamPump:
    return StreamPump(stack, lambda event, context: crm_sync.sync(event, context, crm, deps), retries=retries)


def test_250_changes_land_once_through_429s_and_a_500_with_no_duplicate_task_on_redelivery(stack, client, sync_deps):
    # Given 250 changed members, the first 10 entering Power User, two of them with recent events;
    items = [member_item(i, "Power User", 90.0) if i < 10 else member_item(i) for i in range(250)]
    put_members(client, items)
    put_event(client, "m000", "e1", "answer", 10, "2026-11-30T10:00:00+00:00")
    put_event(client, "m000", "e2", "answer", 10, "2026-11-29T10:00:00+00:00")
    put_event(client, "m000", "e3", "submit_pr", 20, "2026-11-28T10:00:00+00:00")
    # and HubSpot answering the first two calls 429 and the sixth 500.
    fake = FakeHubSpot(faults={0: rate_limited(), 1: rate_limited(), 5: server_error()})
    crm = hubspot(fake)

    # When the stream delivers them in batches of 100;
    assert pump(stack, crm, sync_deps).drain() == 250

    # Then each contact was written exactly once, with the member's values;
    assert len(fake.upserts) == 250 and set(fake.upserts.values()) == {1}
    assert fake.contacts["user7@example.com"]["properties"] == {
        "email": "user7@example.com",
        "community_score": "90.00",
        "community_tier": "Power User",
        "community_tier_changed_at": "2026-12-01T11:00:00.000Z",
        "community_last_activity_at": "2026-11-30T09:00:00.000Z",
    }
    # in the fewest calls: batch 1 = upsert + owner read + task create, batches 2 and 3 = one upsert each (5),
    # plus the two 429s and the 500, each retried once (3).
    assert fake.paths() == [UPSERT, UPSERT, UPSERT, READ, TASKS, UPSERT, UPSERT, UPSERT]
    assert [len(call["inputs"]) for call in fake.calls(UPSERT)] == [100, 100, 100, 100, 100, 50]
    # one task per tier entry, associated with its contact and saying why.
    assert len(fake.tasks) == 10
    first = next(t for t in fake.tasks if t["objectWriteTraceId"] == "m000")
    assert first["associations"][0]["to"] == {"id": fake.contacts["user0@example.com"]["id"]}
    assert "Strongest recent actions: submit a GitHub pull request ×1 (" in first["properties"]["hs_task_body"]
    assert "answer a forum question ×2 (" in first["properties"]["hs_task_body"]

    # When the whole stream is delivered again (a redelivered batch);
    calls_before = len(fake.requests)
    assert pump(stack, crm, sync_deps).drain() == 250

    # Then nothing is sent: no call, no second task.
    assert len(fake.requests) == calls_before and len(fake.tasks) == 10


def test_one_bad_email_is_isolated_reported_by_sequence_number_and_parked(stack, client, sync_deps, context):
    # Given 100 members of which one has an address HubSpot refuses (its 400 refuses the whole batch);
    put_members(client, [member_item(i) for i in range(100)])
    fake = FakeHubSpot(refuse_email=lambda email: email == "user42@example.com")
    crm = hubspot(fake)
    records = list(StreamPump(stack, lambda e, c: None)._read())

    # When the batch is synced;
    response = crm_sync.sync({"Records": records}, context, crm, sync_deps)

    # Then only the bad member's record fails, named by its SequenceNumber, and the 99 others landed once;
    bad = next(r for r in records if r["dynamodb"]["Keys"]["member_id"]["S"] == "m042")
    assert response == {"batchItemFailures": [{"itemIdentifier": bad["dynamodb"]["SequenceNumber"]}]}
    assert len(fake.upserts) == 99 and set(fake.upserts.values()) == {1}
    # found by halving: 100 -> 50 -> 25 -> 13 -> 7 -> 4 -> 2 -> 1, two calls per level after the first.
    assert len(fake.requests) <= 1 + 2 * 7

    # When Lambda retries from the failed record: the 99 members already synced cost nothing.
    calls = len(fake.requests)
    retry = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) >= int(bad["dynamodb"]["SequenceNumber"])]
    crm_sync.sync({"Records": retry}, context, crm, sync_deps)
    assert len(fake.requests) == calls + 1  # the bad member alone, refused again


def test_outage_then_reconcile_brings_the_crm_fully_up_to_date(stack, client, sync_deps, tmp_path):
    # Given HubSpot down while 100 members change (the stream gives up after its retries);
    fake = FakeHubSpot(down=True)
    crm = hubspot(fake)
    put_members(client, [member_item(i, score=40.0 + i / 10) for i in range(100)])
    pump(stack, crm, sync_deps, retries=1).drain()
    assert fake.upserts == {}
    # and one of them changes again during the outage.
    put_members(client, [member_item(5, "Power User", 95.0, version=4)])
    pump(stack, crm, sync_deps, retries=0).drain()

    # When HubSpot is back and the reconcile job runs;
    fake.down = False
    fake.requests.clear()
    summary = crm_reconcile.reconcile(crm, sync_deps)

    # Then every member is in HubSpot at its current version, in one upsert (+ owner read and task for m005);
    assert summary.as_dict() == {"scanned": 100, "already_synced": 0, "pushed": 100, "failed": 0, "calls": 3}
    assert len(fake.contacts) == 100
    assert fake.contacts["user5@example.com"]["properties"]["community_tier"] == "Power User"
    assert fake.contacts["user99@example.com"]["properties"]["community_score"] == "49.90"
    assert len(fake.tasks) == 1

    # and a second run costs no call at all.
    fake.requests.clear()
    again = crm_reconcile.reconcile(crm, sync_deps)
    assert again.already_synced == 100 and again.pushed == 0 and fake.requests == []


def test_an_older_image_never_overwrites_a_newer_synced_version(stack, client, sync_deps, context):
    fake = FakeHubSpot()
    crm = hubspot(fake)
    put_members(client, [member_item(1, score=40.0, version=3)])
    put_members(client, [member_item(1, score=50.0, version=4)])
    records = list(StreamPump(stack, lambda e, c: None)._read())
    # version 4 lands first (say, through the reconcile), then the stream's version 3 record arrives alone.
    crm_sync.sync({"Records": records[1:]}, context, crm, sync_deps)
    crm_sync.sync({"Records": records[:1]}, context, crm, sync_deps)
    assert fake.contacts["user1@example.com"]["properties"]["community_score"] == "50.00"
    assert fake.upserts == {"user1@example.com": 1}


def test_a_promotion_whose_record_failed_still_gets_its_task_on_the_next_version(stack, client, sync_deps, context):
    # Active (synced) -> Power User (v4, HubSpot refuses every call) -> Power User with a higher score (v5).
    fake = FakeHubSpot()
    crm = hubspot(fake)
    put_members(client, [member_item(1, "Active", 40.0, version=3)])
    pump(stack, crm, sync_deps).drain()
    fake.down = True
    put_members(client, [member_item(1, "Power User", 85.0, version=4)])
    pump(stack, crm, sync_deps, retries=0).drain()
    fake.down = False
    put_members(client, [member_item(1, "Power User", 88.0, version=5)])
    pump(stack, crm, sync_deps).drain()
    # The stream's old image of v5 says Power User, but HubSpot last showed Active: the task is due.
    assert len(fake.tasks) == 1
    assert fake.contacts["user1@example.com"]["properties"]["community_score"] == "88.00"


def failure_message(stream_arn: str, shard_id: str, start: str, end: str) -> str:
    # The body Lambda sends to a DynamoDB stream's on-failure destination (see events/crm-sync.failure.sqs.json).
    return json.dumps(
        {
            "requestContext": {
                "requestId": "316aa6d0-8154-4ec0-9b3c-2d6dfd3bb8c3",
                "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:CrmSyncFunction",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 6,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": None},
            "version": "1.0",
            "timestamp": "2026-12-01T12:05:00.000Z",
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": start,
                "endSequenceNumber": end,
                "approximateArrivalOfFirstRecord": "2026-12-01T12:00:00Z",
                "approximateArrivalOfLastRecord": "2026-12-01T12:00:01Z",
                "batchSize": 3,
                "streamArn": stream_arn,
            },
        }
    )


def test_replay_failures_reads_the_members_of_the_failed_range_and_delivers_their_current_state(
    stack, client, sync_deps, moto_endpoint, monkeypatch
):
    # Given three members whose stream batch ended up in the failure queue while HubSpot was down;
    put_members(client, [member_item(i) for i in range(5)])
    records = list(StreamPump(stack, lambda e, c: None)._read())
    first, last = records[1], records[3]  # members m001..m003
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="crm-sync-failures")["QueueUrl"]
    stream_arn = last["eventSourceARN"]
    shard = stack.client("dynamodbstreams").describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=failure_message(
            stream_arn, shard["ShardId"], first["dynamodb"]["SequenceNumber"], last["dynamodb"]["SequenceNumber"]
        ),
    )
    # and m002 changed since.
    put_members(client, [member_item(2, score=44.0, version=4)])

    # When the failures are replayed;
    fake = FakeHubSpot()
    summary = crm_reconcile.replay_failures(sqs, queue_url, stack.client("dynamodbstreams"), hubspot(fake), sync_deps)

    # Then exactly those three members are pushed at their current version and the message is gone.
    assert sorted(fake.contacts) == ["user1@example.com", "user2@example.com", "user3@example.com"]
    assert fake.contacts["user2@example.com"]["properties"]["community_score"] == "44.00"
    assert summary.replayed == 1 and summary.left == 0 and summary.members == 3
    assert sqs.receive_message(QueueUrl=queue_url).get("Messages") is None


def test_sync_state_records_version_tier_and_contact(stack, client, sync_deps, clock):
    fake = FakeHubSpot()
    put_members(client, [member_item(1, "Power User", 90.0)])
    pump(stack, hubspot(fake), sync_deps).drain()
    items = {i["sync_key"]: i for i in sync_deps.sync.items_of("m001")}
    assert items["crm#hubspot"]["synced_version"] == 3 and items["crm#hubspot"]["synced_tier"] == "Power User"
    assert items["crm#hubspot"]["record_id"] == fake.contacts["user1@example.com"]["id"]
    assert items["task#hubspot#3"]["status"] == "done"
    assert clock() - timedelta(0) == clock.now


class FakeSlack:
    """A Slack incoming webhook: `ok` with 200, or the scripted answers first."""

    def __init__(self, script: list[httpx.Response] | None = None) -> None:
        self.script = list(script or [])
        self.messages: list[dict[str, Any]] = []
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.script:
            return self.script.pop(0)
        self.messages.append(json.loads(request.content))
        return httpx.Response(200, text="ok", headers={"Content-Type": "text/html"})


def with_slack(deps, slack: FakeSlack):
    from engagement.adapters.slack import SlackAlerts

    deps.alerts = SlackAlerts(
        "https://hooks.slack.test/services/T000/B000/XXXX", client=httpx.Client(transport=httpx.MockTransport(slack))
    )
    return deps


def test_one_slack_alert_per_tier_entry_with_the_actions_that_earned_it(stack, client, sync_deps):
    slack = FakeSlack([httpx.Response(429, headers={"Retry-After": "1"}, text="rate_limited")])
    deps = with_slack(sync_deps, slack)
    put_members(client, [member_item(1, "Champion", 160.0), member_item(2, "Active", 40.0)])
    put_event(client, "m001", "e1", "create_content", 25, "2026-11-20T10:00:00+00:00")
    crm = hubspot(FakeHubSpot())
    pump(stack, crm, deps).drain()
    pump(stack, crm, deps).drain()  # redelivered
    (message,) = slack.messages
    assert message["text"].startswith("user1 <user1@example.com> is now a *Champion*, score 160.0.")
    assert "• create external content ×1 (" in message["text"]
    assert slack.requests == 2  # the 429, then the message


def test_a_failed_alert_is_retried_without_a_second_task_and_a_refused_one_does_not_block_the_crm(
    stack, client, sync_deps, context
):
    fake = FakeHubSpot()
    crm = hubspot(fake)
    down = [httpx.Response(500, text="internal_error")] * 6  # more than the attempts (stamina testing: 6)
    deps = with_slack(sync_deps, FakeSlack(down))
    put_members(client, [member_item(1, "Power User", 90.0)])
    records = list(StreamPump(stack, lambda e, c: None)._read())
    first = crm_sync.sync({"Records": records}, context, crm, deps)
    assert first == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
    assert crm_sync.sync({"Records": records}, context, crm, deps) == {"batchItemFailures": []}
    assert len(fake.tasks) == 1 and len(deps.alerts.client._transport.handler.messages) == 1

    refused = with_slack(sync_deps, FakeSlack([httpx.Response(404, text="channel_not_found")]))
    put_members(client, [member_item(2, "Power User", 90.0)])
    records = list(StreamPump(stack, lambda e, c: None)._read())[-1:]
    assert crm_sync.sync({"Records": records}, context, crm, refused) == {"batchItemFailures": []}
    assert len(fake.tasks) == 2
