"""The identity audit trail: append-only entries, personal details sealed per member.

Every identity change (a member created, an account linked, a merge, an unmerge, an import, a forget) is one
entry, written under each member it concerns (`member_id`, `entry_id` = `<ISO time>#<random>`) with a
conditional put, so nothing ever overwrites an entry; the functions' roles may put and read entries, never
update or delete them.

What may identify a person (the accounts and emails before and after, an operator's reason) is sealed with
that member's own key (PyNaCl's SecretBox: XSalsa20-Poly1305), kept in the identities table as
`auditkey#<member>`. Forgetting a member deletes its key: the entries stay, still telling who did what to which
member id and when, but nothing in them can be read back to the person (crypto-shredding).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from engagement.domain.identity import audit_key_name
from engagement.settings import Settings

KEY_BYTES = 32
SHREDDED = "sealed with a key that was erased (the member was forgotten)"


def new_key() -> bytes:
    from nacl.utils import random

    return bytes(random(KEY_BYTES))


def seal(key: bytes, details: dict[str, Any]) -> bytes:
    from nacl.secret import SecretBox

    return bytes(SecretBox(key).encrypt(json.dumps(details, sort_keys=True, default=str).encode("utf-8")))


def unseal(key: bytes, blob: bytes) -> dict[str, Any]:
    from nacl.secret import SecretBox

    return json.loads(SecretBox(key).decrypt(blob).decode("utf-8"))  # type: ignore[no-any-return]


class AuditLog:
    """Append and read identity audit entries."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self.client = client

    def key_item(self, member_id: str, key: bytes) -> dict[str, Any]:
        """The identities-table item holding a member's key (written with the member's creation)."""
        return {"key": {"S": audit_key_name(member_id)}, "secret": {"B": key}, "member_id": {"S": member_id}}

    def _key(self, member_id: str, create: bool) -> bytes | None:
        name = {"key": {"S": audit_key_name(member_id)}}
        item = self.client.get_item(TableName=self.settings.identities_table, Key=name, ConsistentRead=True).get("Item")
        if item:
            return bytes(item["secret"]["B"])
        if not create:
            return None
        key = new_key()
        try:
            self.client.put_item(
                TableName=self.settings.identities_table,
                Item=self.key_item(member_id, key),
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": "key"},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self._key(member_id, create=False)
        return key

    def append(
        self,
        action: str,
        members: list[str],
        actor: str,
        at: datetime,
        details: dict[str, dict[str, Any]] | None = None,
        rule: str | None = None,
        why: str | None = None,
        facts: dict[str, Any] | None = None,
    ) -> str:
        """Write one entry under every member in `members`; returns its entry id.

        Args:
            action: what happened (`created`, `linked`, `unlinked`, `merged`, `unmerged`, `imported`, `forgotten`).
            members: the member ids it concerns (the first is the one acted on).
            actor: who did it (`operator:<name>`, `api:<caller>`) or `rule` for an automatic rule.
            at: when.
            details: per member, what identifies people (before/after identities): sealed with that member's key.
            rule: the automatic rule that made the change, if any.
            why: the reason as given (sealed with every member's key: an operator may have typed an address).
            facts: plain, non-personal numbers and ids to keep readable forever (event counts, scores).
        """
        # The wall clock's nanoseconds order entries written at one `at` (a pinned clock, one operation's steps).
        entry_id = f"{at.isoformat()}#{time.time_ns():020d}#{uuid.uuid4().hex[:8]}"
        members = list(dict.fromkeys(members))
        sealed: dict[str, Any] = {}
        for member in members:
            key = self._key(member, create=True)
            assert key is not None
            section = {"why": why, **((details or {}).get(member) or {})}
            sealed[member] = {"B": seal(key, section)}
        item: dict[str, Any] = {
            "entry_id": {"S": entry_id},
            "action": {"S": action},
            "actor": {"S": actor},
            "at": {"S": at.isoformat()},
            "members": {"L": [{"S": m} for m in members]},
            "sealed": {"M": sealed},
        }
        if rule:
            item["rule"] = {"S": rule}
        if facts:
            item["facts"] = {"S": json.dumps(facts, sort_keys=True, default=str)}
        for member in members:
            self.client.put_item(
                TableName=self.settings.audit_table,
                Item={**item, "member_id": {"S": member}},
                ConditionExpression="attribute_not_exists(entry_id)",
            )
        return entry_id

    def history(self, member_id: str) -> list[dict[str, Any]]:
        """A member's entries, oldest first, each member's sealed section opened where its key still exists."""
        keys: dict[str, bytes | None] = {}
        entries = []
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.settings.audit_table,
            KeyConditionExpression="member_id = :m",
            ExpressionAttributeValues={":m": {"S": member_id}},
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                opened: dict[str, Any] = {}
                for member, blob in (item.get("sealed", {}).get("M") or {}).items():
                    if member not in keys:
                        keys[member] = self._key(member, create=False)
                    key = keys[member]
                    opened[member] = unseal(key, bytes(blob["B"])) if key else SHREDDED
                entries.append(
                    {
                        "entry_id": item["entry_id"]["S"],
                        "at": item["at"]["S"],
                        "action": item["action"]["S"],
                        "actor": item["actor"]["S"],
                        "rule": item.get("rule", {}).get("S"),
                        "members": [m["S"] for m in item.get("members", {}).get("L", [])],
                        "facts": json.loads(item["facts"]["S"]) if "facts" in item else {},
                        "details": opened,
                    }
                )
        return entries
