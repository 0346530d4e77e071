"""DynamoDB: events stored once, raw payloads in chunks, identities by key, members scored by ADD.

Tables (see `engagement.tables`):
- identities: `account#<platform>:<user id>` and `email#<address>` point to a member id;
  `owner#<topic key>` records who started a topic. Every lookup is a key read.
- events: one item per accepted activity, keyed by its idempotency key; the conditional put in
  the same transaction as the member's score update is what makes "stored exactly once" hold.
- members: identities, emails, the score accumulators (see `engagement.domain.scoring`), and the
  score and tier materialized at `score_at`, with a `version` bumped on every materialized write.
- raw: each accepted body, gzip-compressed and split into items under DynamoDB's 400 KB limit,
  expiring after the retention period.
"""

from __future__ import annotations

import gzip
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import stamina
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from engagement.domain import scoring
from engagement.domain.activity import Account, Activity, NormalizedEvent, Withdrawal, bound_metadata
from engagement.domain.taxonomy import Taxonomy
from engagement.settings import Settings

RAW_CHUNK_BYTES = 350_000
TRANSACTION_ATTEMPTS = 6
REFRESH_ATTEMPTS = 8
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _reason(error: ClientError, index: int) -> str | None:
    """The cancellation reason of one item of a cancelled transaction."""
    if _code(error) != "TransactionCanceledException":
        return None
    reasons = error.response.get("CancellationReasons") or []
    return str(reasons[index].get("Code")) if index < len(reasons) else None


def _is_conflict(error: Exception) -> bool:
    if not isinstance(error, ClientError) or _code(error) != "TransactionCanceledException":
        return False
    return any(r.get("Code") == "TransactionConflict" for r in error.response.get("CancellationReasons") or [])


@dataclass(frozen=True)
class Recorded:
    status: str  # "stored" or "duplicate"
    event_id: str
    member_id: str | None = None
    score: float | None = None
    tier: str | None = None


@dataclass(frozen=True)
class Withdrawn:
    status: str  # "withdrawn", "already_withdrawn" or "tombstone" (the event was not stored yet)
    event_id: str
    member_id: str | None = None
    points: float = 0.0
    score: float | None = None
    tier: str | None = None


@dataclass(frozen=True)
class Refreshed:
    member_id: str
    score: float
    tier: str
    written: bool


class Store:
    """The project's DynamoDB tables behind the few operations the functions need."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self.client = client

    # Identity -----------------------------------------------------------------------------

    def _get(self, table: str, key: dict[str, Any], consistent: bool = True) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=table, Key=to_item(key), ConsistentRead=consistent)
        item = response.get("Item")
        return from_item(item) if item else None

    def member_for_key(self, key: str) -> str | None:
        item = self._get(self.settings.identities_table, {"key": key})
        return str(item["member_id"]) if item else None

    def topic_owner(self, topic_key: str) -> str | None:
        item = self._get(self.settings.identities_table, {"key": f"owner#{topic_key}"})
        return str(item["account"]) if item else None

    def resolve(self, account: Account, now: datetime) -> str:
        """The member an account belongs to, creating or linking as needed.

        An unknown account joins the member its email already points to, or else becomes a new
        member. Concurrent first sightings of one account converge on one member: the account
        item is written with a condition and the loser re-reads it.
        """
        for _ in range(3):
            member_id = self.member_for_key(f"account#{account.key}")
            if member_id:
                self._attach(member_id, account, now, new_account=False)
                return member_id
            by_email = self.member_for_key(f"email#{account.email}") if account.email else None
            try:
                if by_email:
                    self._put_identity(f"account#{account.key}", by_email, now)
                    self._attach(by_email, account, now, new_account=True)
                    return by_email
                return self._create_member(account, now)
            except ClientError as error:
                if _code(error) not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                    raise
        raise RuntimeError(f"could not settle the member of account {account.key}")

    def _put_identity(self, key: str, member_id: str, now: datetime) -> None:
        self.client.put_item(
            TableName=self.settings.identities_table,
            Item=to_item({"key": key, "member_id": member_id, "linked_at": now.isoformat()}),
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": "key"},
        )

    def _create_member(self, account: Account, now: datetime) -> str:
        member_id = uuid.uuid4().hex
        member: dict[str, Any] = {
            "member_id": member_id,
            "created_at": now.isoformat(),
            "accounts": {account.key},
            "handles": {account.key: account.handle or account.user_id},
            "name": account.handle or account.user_id,
            "event_count": 0,
            "version": 0,
        }
        if account.email:
            member["emails"] = {account.email}
            member["email"] = account.email
        if account.display_name:
            member["display_name"] = account.display_name
        items = [
            {
                "Put": {
                    "TableName": self.settings.members_table,
                    "Item": to_item(member),
                    "ConditionExpression": "attribute_not_exists(member_id)",
                }
            },
            {
                "Put": {
                    "TableName": self.settings.identities_table,
                    "Item": to_item(
                        {"key": f"account#{account.key}", "member_id": member_id, "linked_at": now.isoformat()}
                    ),
                    "ConditionExpression": "attribute_not_exists(#k)",
                    "ExpressionAttributeNames": {"#k": "key"},
                }
            },
        ]
        if account.email:
            items.append(
                {
                    "Put": {
                        "TableName": self.settings.identities_table,
                        "Item": to_item(
                            {"key": f"email#{account.email}", "member_id": member_id, "linked_at": now.isoformat()}
                        ),
                        "ConditionExpression": "attribute_not_exists(#k)",
                        "ExpressionAttributeNames": {"#k": "key"},
                    }
                }
            )
        self.client.transact_write_items(TransactItems=items)
        return member_id

    def _attach(self, member_id: str, account: Account, now: datetime, new_account: bool) -> None:
        """Record the account (and a newly seen email) on the member item."""
        link_email = False
        if account.email:
            owner = self.member_for_key(f"email#{account.email}")
            if owner is None:
                try:
                    self._put_identity(f"email#{account.email}", member_id, now)
                    link_email = True
                except ClientError as error:
                    if _code(error) != "ConditionalCheckFailedException":
                        raise
            # An email already owned by another member is a merge candidate; merging is an
            # operator decision (identity resolution, issue #5), so nothing is linked here.
        if not new_account and not link_email and not account.display_name:
            return
        names = {"#h": "handles", "#k": account.key}
        values: dict[str, Any] = {":a": {account.key}, ":h": account.handle or account.user_id}
        adds, sets = ["accounts :a"], ["#h.#k = :h"]
        if link_email:
            adds.append("emails :e")
            sets.append("email = if_not_exists(email, :m)")
            values.update({":e": {account.email}, ":m": account.email})
        if account.display_name:
            sets.append("display_name = if_not_exists(display_name, :dn)")
            values[":dn"] = account.display_name
        expression = f"ADD {', '.join(adds)} SET {', '.join(sets)}"
        self.client.update_item(
            TableName=self.settings.members_table,
            Key=to_item({"member_id": member_id}),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )

    # Events -------------------------------------------------------------------------------

    def event_exists(self, event_id: str) -> bool:
        response = self.client.get_item(
            TableName=self.settings.events_table,
            Key=to_item({"event_id": event_id}),
            ProjectionExpression="event_id",
            ConsistentRead=True,
        )
        return "Item" in response

    def record(
        self, activity: Activity, raw: bytes, content_type: str, received_at: datetime, taxonomy: Taxonomy
    ) -> Recorded:
        """Store an activity once: raw payload, event and score update; then refresh the member.

        Returns "duplicate" without changing anything when the event was stored before. Safe to
        call again after any failure: every step before the transaction is an idempotent
        overwrite, and the transaction itself happens at most once.
        """
        if self.event_exists(activity.event_id):
            return Recorded("duplicate", activity.event_id)
        member_id = self.resolve(activity.account, received_at)
        action = taxonomy.actions[activity.action]
        event = NormalizedEvent(
            event_id=activity.event_id,
            member_id=member_id,
            action=activity.action,
            platform=activity.platform,
            account=activity.account.key,
            handle=activity.account.handle,
            signal=activity.signal,
            occurred_at=activity.occurred_at,
            received_at=received_at,
            points=action.points,
            half_life_seconds=action.half_life_seconds,
            metadata=bound_metadata(activity.metadata),
        )
        self.put_raw(activity.event_id, raw, content_type, received_at)
        items = self._store_items(event, activity)
        # Concurrent transactions on one member are cancelled with TransactionConflict; the
        # transaction is all-or-nothing, so trying it again is safe.
        for attempt in stamina.retry_context(on=_is_conflict, attempts=TRANSACTION_ATTEMPTS, wait_max=1.0):
            with attempt:
                try:
                    self.client.transact_write_items(TransactItems=items)
                except ClientError as error:
                    if _reason(error, 0) == "ConditionalCheckFailed":
                        return Recorded("duplicate", activity.event_id)
                    raise
        refreshed = self.refresh(member_id, received_at, taxonomy, activity_at=activity.occurred_at)
        return Recorded("stored", activity.event_id, member_id, refreshed.score, refreshed.tier)

    def _store_items(self, event: NormalizedEvent, activity: Activity) -> list[dict[str, Any]]:
        stored = event.as_record()
        stored["points"] = scoring.as_decimal(event.points)
        stored["metadata"] = _decimals(stored["metadata"])
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.settings.events_table,
                    "Item": to_item(stored),
                    "ConditionExpression": "attribute_not_exists(event_id)",
                }
            }
        ]
        expression = "ADD event_count :one"
        names: dict[str, str] = {}
        values: dict[str, Any] = {":one": 1}
        if event.points != 0:
            accumulator, term = scoring.contribution(event.points, event.half_life_seconds, event.occurred_at)
            expression += ", #acc :term"
            names["#acc"] = accumulator
            values[":term"] = scoring.as_decimal(term)
        update: dict[str, Any] = {
            "TableName": self.settings.members_table,
            "Key": to_item({"member_id": event.member_id}),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": to_item(values),
            "ConditionExpression": "attribute_exists(member_id)",
        }
        if names:
            update["ExpressionAttributeNames"] = names
        items.append({"Update": update})
        if activity.registers_owner:
            topic, account_key = activity.registers_owner
            items.append(
                {
                    "Put": {
                        "TableName": self.settings.identities_table,
                        "Item": to_item({"key": f"owner#{topic}", "account": account_key}),
                    }
                }
            )
        return items

    # Withdrawal ---------------------------------------------------------------------------

    def withdraw(self, withdrawal: Withdrawal, received_at: datetime, taxonomy: Taxonomy) -> Withdrawn:
        """Take back what a stored event earned: mark it `withdrawn_at` and subtract its contribution.

        The event item stays (with `withdrawn_at`, ISO UTC) so a redelivery of the original stays a
        duplicate and anything recomputing scores from events can count it as 0. The mark and the
        subtraction from the member's accumulator happen in one transaction conditioned on the event
        not being withdrawn yet, so a repeated withdrawal changes nothing. When the event was never
        stored (the deletion arrived first), a zero-point tombstone is stored under its key instead,
        so the late original is answered as a duplicate and never scores.
        """
        now = received_at.isoformat()
        event: dict[str, Any] | None = None
        for _ in range(3):
            event = self.get_event(withdrawal.event_id)
            if event is not None:
                break
            if self._tombstone(withdrawal, now):
                return Withdrawn("tombstone", withdrawal.event_id)
            # The original landed between our read and the tombstone's conditional put: withdraw it instead.
        if event is None:
            raise RuntimeError(f"could not settle the withdrawal of {withdrawal.event_id}")
        if event.get("withdrawn_at"):
            return Withdrawn("already_withdrawn", withdrawal.event_id, event.get("member_id"))
        for attempt in stamina.retry_context(on=_is_conflict, attempts=TRANSACTION_ATTEMPTS, wait_max=1.0):
            with attempt:
                try:
                    self.client.transact_write_items(TransactItems=self._withdraw_items(event, now))
                except ClientError as error:
                    if _reason(error, 0) == "ConditionalCheckFailed":
                        return Withdrawn("already_withdrawn", withdrawal.event_id, event.get("member_id"))
                    raise
        member_id = str(event["member_id"])
        refreshed = self.refresh(member_id, received_at, taxonomy)
        return Withdrawn(
            "withdrawn", withdrawal.event_id, member_id, float(event.get("points", 0)), refreshed.score, refreshed.tier
        )

    def _withdraw_items(self, event: dict[str, Any], now: str) -> list[dict[str, Any]]:
        points = float(event.get("points", 0))
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.settings.events_table,
                    "Key": to_item({"event_id": event["event_id"]}),
                    "UpdateExpression": "SET withdrawn_at = :now",
                    "ConditionExpression": "attribute_exists(event_id) AND attribute_not_exists(withdrawn_at)",
                    "ExpressionAttributeValues": to_item({":now": now}),
                }
            }
        ]
        # The withdrawn event no longer counts; the count also guards `refresh`'s conditional write.
        expression = "ADD event_count :minus_one"
        names: dict[str, str] = {}
        values: dict[str, Any] = {":minus_one": -1}
        if points != 0:
            occurred_at = datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))
            accumulator, term = scoring.contribution(points, int(event["half_life_seconds"]), occurred_at)
            expression += ", #acc :negative"
            names["#acc"] = accumulator
            values[":negative"] = scoring.as_decimal(-term)
        update: dict[str, Any] = {
            "TableName": self.settings.members_table,
            "Key": to_item({"member_id": event["member_id"]}),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": to_item(values),
            "ConditionExpression": "attribute_exists(member_id)",
        }
        if names:
            update["ExpressionAttributeNames"] = names
        items.append({"Update": update})
        return items

    def _tombstone(self, withdrawal: Withdrawal, now: str) -> bool:
        tombstone = {
            "event_id": withdrawal.event_id,
            "platform": withdrawal.platform,
            "signal": withdrawal.signal,
            "points": 0,
            "withdrawn_at": now,
            "received_at": now,
            "occurred_at": withdrawal.occurred_at.isoformat(),
        }
        try:
            self.client.put_item(
                TableName=self.settings.events_table,
                Item=to_item(tombstone),
                ConditionExpression="attribute_not_exists(event_id)",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    # Raw payloads -------------------------------------------------------------------------

    def put_raw(self, event_id: str, body: bytes, content_type: str, received_at: datetime) -> int:
        """Store a body compressed, in as many items as it needs; returns the number of chunks."""
        # Level 1 keeps the cost per delivery low; mtime=0 makes a retried write byte-identical.
        data = gzip.compress(body, compresslevel=1, mtime=0)
        chunks = [data[i : i + RAW_CHUNK_BYTES] for i in range(0, len(data), RAW_CHUNK_BYTES)] or [b""]
        expires = int((received_at + timedelta(days=self.settings.raw_retention_days)).timestamp())
        requests = [
            {
                "PutRequest": {
                    "Item": to_item(
                        {
                            "event_id": event_id,
                            "chunk": n,
                            "chunks": len(chunks),
                            "data": chunk,
                            "content_type": content_type,
                            "received_at": received_at.isoformat(),
                            "expires_at": expires,
                        }
                    )
                }
            }
            for n, chunk in enumerate(chunks)
        ]
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.settings.raw_table: requests[start : start + 25]}
            for _ in range(10):
                unprocessed = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not unprocessed:
                    break
                pending = unprocessed
            else:
                raise RuntimeError(f"raw payload of {event_id} was not fully written")
        return len(chunks)

    def get_raw(self, event_id: str) -> bytes | None:
        items = list(self._query(self.settings.raw_table, "event_id = :e", {":e": event_id}))
        if not items:
            return None
        items.sort(key=lambda item: int(item["chunk"]))
        return gzip.decompress(b"".join(bytes(item["data"]) for item in items))

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        return self._get(self.settings.events_table, {"event_id": event_id})

    def events_of(self, member_id: str) -> list[dict[str, Any]]:
        return list(self._query(self.settings.events_table, "member_id = :m", {":m": member_id}, index="by-member"))

    def _query(
        self, table: str, condition: str, values: dict[str, Any], index: str | None = None
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_item(values),
        }
        if index:
            kwargs["IndexName"] = index
        for page in self.client.get_paginator("query").paginate(**kwargs):
            yield from (from_item(item) for item in page.get("Items", []))

    # Members ------------------------------------------------------------------------------

    def get_member(self, member_id: str) -> dict[str, Any] | None:
        return self._get(self.settings.members_table, {"member_id": member_id})

    def scan_members(self) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("scan").paginate(TableName=self.settings.members_table):
            yield from (from_item(item) for item in page.get("Items", []))

    def refresh(
        self,
        member_id: str,
        now: datetime,
        taxonomy: Taxonomy,
        activity_at: datetime | None = None,
        member: dict[str, Any] | None = None,
        epsilon: float | None = None,
    ) -> Refreshed:
        """Bring a member's materialized score and tier to `now` from its accumulators.

        The write is conditional on the event count and version it was computed from, so a
        concurrent event or recalculation makes it re-read instead of overwriting newer data.
        With `epsilon`, nothing is written unless the tier changes or the score moves by more.
        After `REFRESH_ATTEMPTS` conflicts it returns without writing (`written=False`).
        """
        score, tier = 0.0, ""
        for attempt in range(REFRESH_ATTEMPTS):
            item = member if member is not None else self.get_member(member_id)
            member = None
            if item is None:
                raise LookupError(f"member {member_id} does not exist")
            score = scoring.score_at(scoring.accumulators_of(item), now)
            tier = taxonomy.tier_for(score)
            old_tier = item.get("tier")
            last = item.get("last_activity_at")
            newer_activity = activity_at is not None and (last is None or activity_at.isoformat() > str(last))
            if (
                epsilon is not None
                and tier == old_tier
                and not newer_activity
                and "score" in item
                and abs(score - float(item["score"])) <= epsilon
            ):
                return Refreshed(member_id, score, tier, written=False)

            sets = ["score = :s", "tier = :t", "score_at = :now", "version = version + :one"]
            values: dict[str, Any] = {
                ":s": scoring.as_decimal(score),
                ":t": tier,
                ":now": now.isoformat(),
                ":one": 1,
                ":n": item.get("event_count", 0),
                ":v": item.get("version", 0),
            }
            if tier != old_tier:
                sets += ["tier_changed_at = :now", "previous_tier = :pt"]
                values[":pt"] = old_tier or "none"
            if newer_activity and activity_at is not None:
                sets.append("last_activity_at = :la")
                values[":la"] = activity_at.isoformat()
            try:
                self.client.update_item(
                    TableName=self.settings.members_table,
                    Key=to_item({"member_id": member_id}),
                    UpdateExpression="SET " + ", ".join(sets),
                    ConditionExpression="event_count = :n AND version = :v",
                    ExpressionAttributeValues=to_item(values),
                )
                return Refreshed(member_id, score, tier, written=True)
            except ClientError as error:
                if _code(error) != "ConditionalCheckFailedException":
                    raise
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        # Every write that beat ours read the member after our change (the condition on
        # event_count guarantees it), so the stored score already includes it, or will once the
        # writer of the newer event refreshes. Nothing is lost by stepping aside.
        return Refreshed(member_id, score, tier, written=False)


def _decimals(value: Any) -> Any:
    """Floats inside metadata as Decimals, as boto3 requires."""
    if isinstance(value, float):
        return scoring.as_decimal(value)
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def as_plain(value: Any) -> Any:
    """DynamoDB values (Decimals, sets, Binary) as JSON-friendly Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return sorted(as_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_plain(v) for v in value]
    return value
