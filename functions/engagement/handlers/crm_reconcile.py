"""Scheduled reconcile and failure replay: bring the CRM up to every member's current version.

The stream is the fast path; this is the safety net. `reconcile` scans the members table and hands
every member to `crm_sync.deliver` in chunks of 100, which drops those the CRM already has at their
current version (no CRM call) and pushes the rest, exactly once per (member, version) as the stream
does. However long the CRM was down, the next run after it comes back brings it fully up to date.

`replay_failures` re-drives the messages of the stream's SQS failure destination. Such a message
carries no member data, only the stream coordinates of the failed batch (`DDBStreamBatchInfo`:
stream ARN, shard, first and last sequence number). Each is read back from the stream to learn the
member ids, whose *current* item is then read from the table by key and delivered; a record older
than the stream's 24-hour retention can no longer be read, so such a message is answered with a
full reconcile instead. A message is deleted once its members landed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.domain.crm import MemberChange
from engagement.domain.sync import change_from_member
from engagement.handlers import crm_sync
from engagement.observability import logger, metrics
from engagement.settings import Settings

CHUNK = 100


@dataclass
class ReconcileSummary:
    scanned: int = 0
    already_synced: int = 0
    pushed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "already_synced": self.already_synced,
            "pushed": self.pushed,
            "failed": len(self.failed),
            "calls": self.calls,
        }

    def add(self, delivery: crm_sync.Delivery) -> None:
        self.already_synced += delivery.already_synced
        self.pushed += len(delivery.pushed)
        self.failed.update(delivery.failed)
        self.calls += delivery.calls


def deliver_members(items: Any, crm: Any, deps: crm_sync.SyncDependencies) -> ReconcileSummary:
    """Deliver the current state of each member item, 100 at a time."""
    summary = ReconcileSummary()
    taxonomy = deps.taxonomy()
    chunk: list[MemberChange] = []
    for item in items:
        summary.scanned += 1
        change = change_from_member(item, taxonomy)
        if isinstance(change, MemberChange):
            chunk.append(change)
        if len(chunk) == CHUNK:
            summary.add(crm_sync.deliver(chunk, crm, deps))
            chunk = []
    if chunk:
        summary.add(crm_sync.deliver(chunk, crm, deps))
    return summary


def reconcile(crm: Any, deps: crm_sync.SyncDependencies) -> ReconcileSummary:
    """Push every member whose synced version is behind its version."""
    return deliver_members(deps.store.scan_members(), crm, deps)


@dataclass(frozen=True)
class StreamRange:
    stream_arn: str
    shard_id: str
    start: str
    end: str

    @classmethod
    def from_message(cls, body: str) -> StreamRange:
        """The stream coordinates in an on-failure destination message.

        Raises:
            ValueError: the body is not such a message.
        """
        try:
            info = json.loads(body)["DDBStreamBatchInfo"]
            return cls(info["streamArn"], info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"])
        except (ValueError, KeyError, TypeError):
            raise ValueError("not a DynamoDB stream failure message (no DDBStreamBatchInfo)") from None


def members_in_range(streams: Any, failure: StreamRange) -> list[str]:
    """The member ids of the stream records from `start` to `end` (inclusive), in stream order."""
    iterator = streams.get_shard_iterator(
        StreamArn=failure.stream_arn,
        ShardId=failure.shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=failure.start,
    )["ShardIterator"]
    member_ids: list[str] = []
    end = int(failure.end)
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        records = page.get("Records", [])
        for record in records:
            if int(record["dynamodb"]["SequenceNumber"]) > end:
                return list(dict.fromkeys(member_ids))
            member_ids.append(record["dynamodb"]["Keys"]["member_id"]["S"])
        if not records:
            break
        iterator = page.get("NextShardIterator")
    return list(dict.fromkeys(member_ids))


@dataclass
class ReplaySummary:
    messages: int = 0
    replayed: int = 0
    members: int = 0
    fell_back_to_reconcile: bool = False
    failed: dict[str, str] = field(default_factory=dict)
    left: int = 0  # messages kept on the queue because some member failed again

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "failed": len(self.failed)}


def replay_failures(
    sqs: Any, queue_url: str, streams: Any, crm: Any, deps: crm_sync.SyncDependencies, max_messages: int = 1000
) -> ReplaySummary:
    """Re-drive the failure queue: each message's members are read by key and delivered at their current version."""
    from botocore.exceptions import ClientError

    summary = ReplaySummary()
    reconciled = reconcile_ok = False
    while summary.messages < max_messages:
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = response.get("Messages", [])
        if not messages:
            break
        for message in messages:
            summary.messages += 1
            try:
                failure = StreamRange.from_message(message["Body"])
                member_ids = members_in_range(streams, failure)
            except ValueError as error:
                logger.error(
                    "unreadable failure message", extra={"message_id": message.get("MessageId"), "reason": str(error)}
                )
                summary.left += 1
                continue
            except ClientError as error:
                # TrimmedDataAccessException / ResourceNotFoundException: the records are past the stream's
                # 24-hour retention. Every member behind its version is caught by one reconcile.
                logger.warning("stream range unreadable; reconciling", extra={"reason": str(error)})
                if not reconciled:
                    outcome = reconcile(crm, deps)
                    summary.failed.update(outcome.failed)
                    reconcile_ok = not outcome.failed
                    summary.fell_back_to_reconcile = reconciled = True
                if not reconcile_ok:
                    summary.left += 1
                    continue
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                summary.replayed += 1
                continue
            items = [item for item in (deps.store.get_member(m) for m in member_ids) if item]
            outcome = deliver_members(items, crm, deps)
            summary.members += len(member_ids)
            summary.failed.update(outcome.failed)
            if outcome.failed:
                summary.left += 1
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            summary.replayed += 1
    return summary


_crm: Any = None
_deps: crm_sync.SyncDependencies | None = None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge schedule: reconcile the CRM with the members table."""
    global _crm, _deps
    _crm = _crm or crm_sync.crm_adapter(Settings.from_env())
    _deps = _deps or crm_sync.default_dependencies()
    summary = reconcile(_crm, _deps)
    logger.info("reconciled", extra={**summary.as_dict(), "scheduled_time": (event or {}).get("time")})
    metrics.add_metric(name="CrmReconciled", unit="Count", value=summary.pushed)
    metrics.add_metric(name="CrmFailures", unit="Count", value=len(summary.failed))
    return summary.as_dict()
