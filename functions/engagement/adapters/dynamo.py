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

from engagement.adapters.audit import AuditLog, new_key
from engagement.domain import scoring
from engagement.domain.activity import Account, Activity, NormalizedEvent, Withdrawal, bound_metadata
from engagement.domain.identity import IdentityPolicy, account_key, email_key, handle_key, sso_key
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
        self.audit = AuditLog(settings, client)

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

    def resolve(self, account: Account, now: datetime, policy: IdentityPolicy | None = None) -> str:
        """The home member of an account, creating or linking as needed.

        A known account answers with its home member (and what it carries, a verified email, an SSO subject, a
        profile link, may merge that member with another by an automatic rule). An unknown account joins the
        member its SSO subject, verified email or profile link names, in that order, or else becomes a new
        member. Concurrent first sightings of one account converge on one member: the account item is written
        with a condition and the loser re-reads it. Every lookup is a key read.
        """
        policy = policy or IdentityPolicy()
        for _ in range(3):
            home = self.member_for_key(account_key(account.key))
            if home:
                self._attach(home, account, now, new_account=False, policy=policy)
                return home
            target, rule = self._linked_member(account, policy)
            try:
                if target:
                    self._put_identity(account_key(account.key), target, now)
                    self.audit.append(
                        "linked",
                        [target],
                        "rule",
                        now,
                        rule=rule,
                        details={target: {"added": [account.key]}},
                        why=f"a new {account.platform} account joined the member by rule {rule}",
                    )
                    self._attach(target, account, now, new_account=True, policy=policy)
                    return target
                return self._create_member(account, now, policy)
            except ClientError as error:
                if _code(error) not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                    raise
        raise RuntimeError(f"could not settle the member of account {account.key}")

    def _linked_member(self, account: Account, policy: IdentityPolicy) -> tuple[str | None, str | None]:
        """The member an unknown account's SSO subject, verified email or profile links name, and the rule."""
        rules = policy.auto_links
        if account.sso_subject and "sso_subject" in rules:
            found = self.member_for_key(sso_key(account.sso_subject))
            if found:
                return found, "sso_subject"
        if account.email and account.email_verified and "verified_email" in rules:
            found = self.member_for_key(email_key(account.email))
            if found:
                return found, "verified_email"
        for link in account.profile_links:
            rule = self._link_rule(account, link)
            if rule in rules:
                found = self.member_for_link(link)
                if found:
                    return found, rule
        return None, None

    @staticmethod
    def _link_rule(account: Account, link: tuple[str, str]) -> str:
        # A noreply address is GitHub's own statement of the account; a profile field is the person's.
        return "github_noreply" if link[0] == "github" and not link[1].startswith("@") else "profile_link"

    def member_for_link(self, link: tuple[str, str]) -> str | None:
        """The home member of the account a profile link names: `("github", "583231")` or `("github", "@octocat")`."""
        platform, value = link
        if value.startswith("@"):
            item = self._get(self.settings.identities_table, {"key": handle_key(platform, value[1:])})
            if not item:
                return None
            return self.member_for_key(account_key(str(item["account"])))
        return self.member_for_key(account_key(f"{platform}:{value}"))

    def _put_identity(self, key: str, member_id: str, now: datetime, **extra: Any) -> None:
        self.client.put_item(
            TableName=self.settings.identities_table,
            Item=to_item({"key": key, "member_id": member_id, "linked_at": now.isoformat(), **extra}),
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": "key"},
        )

    def _identity_put(self, key: str, member_id: str, now: datetime, **extra: Any) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.settings.identities_table,
                "Item": to_item({"key": key, "member_id": member_id, "linked_at": now.isoformat(), **extra}),
                "ConditionExpression": "attribute_not_exists(#k)",
                "ExpressionAttributeNames": {"#k": "key"},
            }
        }

    def _create_member(self, account: Account, now: datetime, policy: IdentityPolicy) -> str:
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
        linked_email = account.email if account.email and account.email_verified else None
        if linked_email and self.member_for_key(email_key(linked_email)) is not None:
            linked_email = None  # another member has it and no rule links by it: evidence for suggestions only
        if linked_email:
            member["emails"] = {linked_email}
            member["email"] = linked_email
        elif account.email:
            member["unverified_emails"] = {account.email}
        sso_free = bool(account.sso_subject) and self.member_for_key(sso_key(str(account.sso_subject))) is None
        if sso_free:
            member["sso_subjects"] = {account.sso_subject}
        if account.display_name:
            member["display_name"] = account.display_name
        key = new_key()
        items = [
            {
                "Put": {
                    "TableName": self.settings.members_table,
                    "Item": to_item(member),
                    "ConditionExpression": "attribute_not_exists(member_id)",
                }
            },
            self._identity_put(account_key(account.key), member_id, now, event_count=0),
            {"Put": {"TableName": self.settings.identities_table, "Item": self.audit.key_item(member_id, key)}},
        ]
        if linked_email:
            items.append(self._identity_put(email_key(linked_email), member_id, now))
        if sso_free:
            items.append(self._identity_put(sso_key(str(account.sso_subject)), member_id, now))
        self.client.transact_write_items(TransactItems=items)
        self._index_handle(account, now)
        self.audit.append(
            "created",
            [member_id],
            "rule",
            now,
            rule="first_seen",
            details={member_id: {"added": [account.key, *([linked_email] if linked_email else [])]}},
            why=f"first {account.platform} account of a person not known yet",
        )
        return member_id

    def _index_handle(self, account: Account, now: datetime) -> None:
        """Point a GitHub login at its account, so profiles that name the login resolve with a key read."""
        if account.platform != "github" or not account.handle:
            return
        self.client.put_item(
            TableName=self.settings.identities_table,
            Item=to_item(
                {"key": handle_key("github", account.handle), "account": account.key, "seen_at": now.isoformat()}
            ),
        )

    def _attach(
        self, member_id: str, account: Account, now: datetime, new_account: bool, policy: IdentityPolicy
    ) -> None:
        """Record the account (and a newly seen email or SSO subject) on its home member; merge by rule."""
        rules = policy.auto_links
        link_email = unverified = False
        merge_with: list[tuple[str, str]] = []
        if account.email and account.email_verified:
            owner = self.member_for_key(email_key(account.email))
            if owner is None:
                try:
                    self._put_identity(email_key(account.email), member_id, now)
                    link_email = True
                except ClientError as error:
                    if _code(error) != "ConditionalCheckFailedException":
                        raise
            elif owner != member_id and "verified_email" in rules:
                merge_with.append((owner, "verified_email"))
        elif account.email:
            unverified = True
        link_sso = False
        if account.sso_subject:
            owner = self.member_for_key(sso_key(account.sso_subject))
            if owner is None:
                try:
                    self._put_identity(sso_key(account.sso_subject), member_id, now)
                    link_sso = True
                except ClientError as error:
                    if _code(error) != "ConditionalCheckFailedException":
                        raise
            elif owner != member_id and "sso_subject" in rules:
                merge_with.append((owner, "sso_subject"))
        if not new_account:
            for link in account.profile_links:
                rule = self._link_rule(account, link)
                found = self.member_for_link(link) if rule in rules else None
                if found and found != member_id:
                    merge_with.append((found, rule))
        if new_account:
            self._index_handle(account, now)

        if new_account or link_email or unverified or link_sso or account.display_name:
            names = {"#h": "handles", "#k": account.key}
            values: dict[str, Any] = {":a": {account.key}, ":h": account.handle or account.user_id}
            adds, sets = ["accounts :a"], ["#h.#k = :h"]
            if link_email:
                adds.append("emails :e")
                sets.append("email = if_not_exists(email, :m)")
                values.update({":e": {account.email}, ":m": account.email})
            if unverified:
                adds.append("unverified_emails :u")
                values[":u"] = {account.email}
            if link_sso:
                adds.append("sso_subjects :s")
                values[":s"] = {account.sso_subject}
            if account.display_name:
                sets.append("display_name = if_not_exists(display_name, :dn)")
                values[":dn"] = account.display_name
            self.client.update_item(
                TableName=self.settings.members_table,
                Key=to_item({"member_id": member_id}),
                UpdateExpression=f"ADD {', '.join(adds)} SET {', '.join(sets)}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        for other, rule in merge_with:
            self._auto_merge(member_id, other, rule, now)

    def _auto_merge(self, member_id: str, other: str, rule: str, now: datetime) -> None:
        """Merge two members an automatic rule says are one person (never a pair an operator kept apart)."""
        from engagement.adapters import identity_store

        identity_store.IdentityStore(self).auto_merge(member_id, other, rule, now)

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
        action = taxonomy.actions[activity.action]
        self.put_raw(activity.event_id, raw, content_type, received_at)
        for _ in range(TRANSACTION_ATTEMPTS):
            member_id = self.resolve(activity.account, received_at, taxonomy.identity)
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
            items = self._store_items(event, activity)
            # Concurrent transactions on one member are cancelled with TransactionConflict; the
            # transaction is all-or-nothing, so trying it again is safe.
            try:
                for attempt in stamina.retry_context(on=_is_conflict, attempts=TRANSACTION_ATTEMPTS, wait_max=1.0):
                    with attempt:
                        self.client.transact_write_items(TransactItems=items)
                break
            except ClientError as error:
                if _reason(error, 0) == "ConditionalCheckFailed":
                    return Recorded("duplicate", activity.event_id)
                if _reason(error, 2) != "ConditionalCheckFailed":
                    raise
                # The account moved to another member (an operator's link or unlink) between our read and the
                # write: resolve again, so the points land where the account now lives.
        else:
            raise RuntimeError(f"could not settle the member of account {activity.account.key}")
        refreshed = self.refresh(member_id, received_at, taxonomy, activity_at=activity.occurred_at)
        return Recorded("stored", activity.event_id, refreshed.member_id, refreshed.score, refreshed.tier)

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
        # The account's own ledger: the same terms, so the account can later move to another member exactly.
        ledger: dict[str, Any] = {
            "TableName": self.settings.identities_table,
            "Key": to_item({"key": account_key(event.account)}),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": to_item({**values, ":home": event.member_id}),
            "ConditionExpression": "member_id = :home",
        }
        if names:
            ledger["ExpressionAttributeNames"] = names
        items.append({"Update": ledger})
        if activity.registers_owner:
            topic, owner_account = activity.registers_owner
            items.append(
                {
                    "Put": {
                        "TableName": self.settings.identities_table,
                        "Item": to_item({"key": f"owner#{topic}", "account": owner_account}),
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
        for _ in range(TRANSACTION_ATTEMPTS):
            # The points come off the member the event's account belongs to now (it may have moved since).
            home = self.member_for_key(account_key(str(event["account"]))) or str(event["member_id"])
            try:
                for attempt in stamina.retry_context(on=_is_conflict, attempts=TRANSACTION_ATTEMPTS, wait_max=1.0):
                    with attempt:
                        self.client.transact_write_items(TransactItems=self._withdraw_items(event, home, now))
                break
            except ClientError as error:
                if _reason(error, 0) == "ConditionalCheckFailed":
                    return Withdrawn("already_withdrawn", withdrawal.event_id, event.get("member_id"))
                if _reason(error, 2) != "ConditionalCheckFailed":
                    raise
        else:
            raise RuntimeError(f"could not settle the withdrawal of {withdrawal.event_id}")
        refreshed = self.refresh(home, received_at, taxonomy)
        return Withdrawn(
            "withdrawn",
            withdrawal.event_id,
            refreshed.member_id,
            float(event.get("points", 0)),
            refreshed.score,
            refreshed.tier,
        )

    def _withdraw_items(self, event: dict[str, Any], home: str, now: str) -> list[dict[str, Any]]:
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
            "Key": to_item({"member_id": home}),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": to_item(values),
            "ConditionExpression": "attribute_exists(member_id)",
        }
        ledger: dict[str, Any] = {
            "TableName": self.settings.identities_table,
            "Key": to_item({"key": account_key(str(event["account"]))}),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": to_item({**values, ":home": home}),
            "ConditionExpression": "member_id = :home",
        }
        if names:
            update["ExpressionAttributeNames"] = names
            ledger["ExpressionAttributeNames"] = names
        items += [{"Update": update}, {"Update": ledger}]
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

    def events_of_account(self, account: str, since: str | None = None) -> Iterator[dict[str, Any]]:
        """The events an account earned (wherever it lives now), oldest first; from `since` (ISO) if given."""
        if since:
            return self._query(
                self.settings.events_table,
                "account = :a AND occurred_at >= :since",
                {":a": account, ":since": since},
                index="by-account",
            )
        return self._query(self.settings.events_table, "account = :a", {":a": account}, index="by-account")

    def person_events(self, root_id: str, since: str | None = None) -> list[dict[str, Any]]:
        """Every event of a member as it stands now: its own accounts' and its parts' accounts' events."""
        try:
            root, parts = self.cluster(root_id)
        except LookupError:  # forgotten since the stream record was written: what the index still holds
            condition = "member_id = :m" + (" AND occurred_at >= :since" if since else "")
            values = {":m": root_id, **({":since": since} if since else {})}
            return list(self._query(self.settings.events_table, condition, values, index="by-member"))
        accounts = set(root.get("accounts") or set())
        for part in parts.values():
            accounts |= set(part.get("accounts") or set())
        found = {str(e["event_id"]): e for a in sorted(accounts) for e in self.events_of_account(a, since)}
        # Events stored for these members whose account has since moved away belong to the account's new
        # member; events with no account at all (none are written so now) are kept by the member they name.
        condition = "member_id = :m" + (" AND occurred_at >= :since" if since else "")
        for member_id in [root_id, *parts]:
            values = {":m": member_id, **({":since": since} if since else {})}
            for event in self._query(self.settings.events_table, condition, values, index="by-member"):
                if not event.get("account"):
                    found.setdefault(str(event["event_id"]), event)
        return list(found.values())

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

    def get_members(self, member_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Member items by id (consistent reads, 100 per call); missing ids are absent from the answer."""
        found: dict[str, dict[str, Any]] = {}
        ids = list(dict.fromkeys(member_ids))
        for start in range(0, len(ids), 100):
            pending: dict[str, Any] = {
                self.settings.members_table: {
                    "Keys": [to_item({"member_id": m}) for m in ids[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(10):
                answer = self.client.batch_get_item(RequestItems=pending)
                for item in answer.get("Responses", {}).get(self.settings.members_table, []):
                    plain = from_item(item)
                    found[str(plain["member_id"])] = plain
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
        return found

    def root_of(self, member_id: str) -> str:
        """The member whose score counts this member's activity: itself, or the member it was merged into."""
        item = self.get_member(member_id)
        return str(item["merged_into"]) if item and item.get("merged_into") else member_id

    def cluster(self, root_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """A root member's item and its parts' items."""
        root = self.get_member(root_id)
        if root is None:
            raise LookupError(f"member {root_id} does not exist")
        parts = dict(root.get("parts") or {})
        return root, self.get_members(list(parts)) if parts else {}

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

        A merged member is refreshed through its root, whose score sums its own and its parts' accumulators.
        The write is conditional on the event count and version it was computed from (for a root with
        parts, in one transaction with a check that no part changed or left), so a concurrent event,
        merge or recalculation makes it re-read instead of overwriting newer data. With `epsilon`, nothing
        is written unless the tier changes or the score moves by more. After `REFRESH_ATTEMPTS` conflicts
        it returns without writing (`written=False`).
        """
        score, tier = 0.0, ""
        for attempt in range(REFRESH_ATTEMPTS):
            item = member if member is not None else self.get_member(member_id)
            member = None
            if item is None:
                raise LookupError(f"member {member_id} does not exist")
            if item.get("merged_into"):
                member_id = str(item["merged_into"])
                continue
            part_ids = list((item.get("parts") or {}).keys())
            parts = self.get_members(part_ids) if part_ids else {}
            if any(parts.get(p, {}).get("merged_into") != member_id for p in part_ids):
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
                continue  # a merge or unmerge is half-way: read again
            accumulators = scoring.accumulators_of(item)
            events_total = int(item.get("event_count", 0))
            for part in parts.values():
                for name, value in scoring.accumulators_of(part).items():
                    accumulators[name] = accumulators.get(name, 0.0) + value
                events_total += int(part.get("event_count", 0))
            latest = max(
                [str(p["last_activity_at"]) for p in parts.values() if p.get("last_activity_at")], default=None
            )
            score = scoring.score_at(accumulators, now)
            tier = taxonomy.tier_for(score)
            old_tier = item.get("tier")
            last = item.get("last_activity_at")
            candidates = [m for m in (activity_at.isoformat() if activity_at else None, latest) if m]
            newest = max(candidates) if candidates else None
            newer_activity = newest is not None and (last is None or newest > str(last))
            if (
                epsilon is not None
                and tier == old_tier
                and not newer_activity
                and "score" in item
                and abs(score - float(item["score"])) <= epsilon
                and int(item.get("events_total", events_total)) == events_total
            ):
                return Refreshed(member_id, score, tier, written=False)

            sets = ["score = :s", "tier = :t", "score_at = :now", "version = version + :one", "events_total = :et"]
            values: dict[str, Any] = {
                ":s": scoring.as_decimal(score),
                ":t": tier,
                ":now": now.isoformat(),
                ":one": 1,
                ":n": item.get("event_count", 0),
                ":v": item.get("version", 0),
                ":et": events_total,
            }
            if tier != old_tier:
                sets += ["tier_changed_at = :now", "previous_tier = :pt"]
                values[":pt"] = old_tier or "none"
            if newer_activity and newest is not None:
                sets.append("last_activity_at = :la")
                values[":la"] = newest
            update = {
                "TableName": self.settings.members_table,
                "Key": to_item({"member_id": member_id}),
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": "event_count = :n AND version = :v AND attribute_not_exists(merged_into)",
                "ExpressionAttributeValues": to_item(values),
            }
            try:
                if parts:
                    checks = [
                        {
                            "ConditionCheck": {
                                "TableName": self.settings.members_table,
                                "Key": to_item({"member_id": part_id}),
                                "ConditionExpression": "event_count = :n AND merged_into = :root",
                                "ExpressionAttributeValues": to_item(
                                    {":n": part.get("event_count", 0), ":root": member_id}
                                ),
                            }
                        }
                        for part_id, part in parts.items()
                    ]
                    self.client.transact_write_items(TransactItems=[{"Update": update}, *checks])
                else:
                    self.client.update_item(**update)
                return Refreshed(member_id, score, tier, written=True)
            except ClientError as error:
                if _code(error) not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
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
