"""The sync state table: what each CRM last took per member, and claims that make tasks and alerts happen once.

Items, all under the member's id:
- `crm#<crm>`: `synced_version`, `synced_tier`, `record_id` (the CRM contact), `synced_at`. Written only
  upwards (a conditional update on the version), so a late, older push can never mark an older version.
- `task#<crm>#<version>` and `alert#<channel>#<version>`: a claim taken by a conditional put before the
  task or alert is sent (`status` pending), marked `done` after, or deleted when the send failed so the retry
  may send it. A second delivery of the same tier entry finds the claim and sends nothing.
- member `#pull`, `sync_key` `<crm>:<object type>`: the inbound pull's cursor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from engagement.adapters.dynamo import from_item, to_item
from engagement.domain.sync import SyncState
from engagement.settings import Settings

PULL_MEMBER = "#pull"
BATCH_GET_LIMIT = 100


def _conditional_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class SyncStore:
    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self.client = client

    @property
    def table(self) -> str:
        return self.settings.sync_table

    def states(self, crm: str, member_ids: list[str]) -> dict[str, SyncState]:
        """The CRM's sync state of each member (a member never synced gets the empty state)."""
        found: dict[str, SyncState] = {m: SyncState() for m in member_ids}
        unique = list(dict.fromkeys(member_ids))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            keys = [
                to_item({"member_id": m, "sync_key": f"crm#{crm}"}) for m in unique[start : start + BATCH_GET_LIMIT]
            ]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for _ in range(10):
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    values = from_item(item)
                    found[str(values["member_id"])] = SyncState.from_item(values)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RuntimeError("DynamoDB kept sync state keys unprocessed")
        return found

    def mark_synced(
        self, crm: str, member_id: str, version: int, tier: str, record_id: str | None, now: datetime
    ) -> bool:
        """Record that the CRM took `version`; False when it had already taken this version or a newer one."""
        sets = "synced_version = :v, synced_tier = :t, synced_at = :now"
        values: dict[str, Any] = {":v": version, ":t": tier, ":now": now.isoformat()}
        if record_id:
            sets += ", record_id = :r"
            values[":r"] = record_id
        try:
            self.client.update_item(
                TableName=self.table,
                Key=to_item({"member_id": member_id, "sync_key": f"crm#{crm}"}),
                UpdateExpression="SET " + sets,
                ConditionExpression="attribute_not_exists(synced_version) OR synced_version < :v",
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def claim(self, member_id: str, key: str, now: datetime) -> bool:
        """Take the claim `key` (e.g. `task#hubspot#7`); False when someone took it before."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(
                    {"member_id": member_id, "sync_key": key, "status": "pending", "claimed_at": now.isoformat()}
                ),
                ConditionExpression="attribute_not_exists(sync_key)",
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def complete(self, member_id: str, key: str, now: datetime, detail: str | None = None) -> None:
        values: dict[str, Any] = {":d": "done", ":now": now.isoformat()}
        expression = "SET #s = :d, done_at = :now"
        if detail:
            expression += ", detail = :detail"
            values[":detail"] = detail
        self.client.update_item(
            TableName=self.table,
            Key=to_item({"member_id": member_id, "sync_key": key}),
            UpdateExpression=expression,
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=to_item(values),
        )

    def release(self, member_id: str, key: str) -> None:
        """Give a pending claim back after a send that certainly failed, so the retry can send."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=to_item({"member_id": member_id, "sync_key": key}),
                ConditionExpression="#s = :p",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=to_item({":p": "pending"}),
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise

    def items_of(self, member_id: str) -> list[dict[str, Any]]:
        response = self.client.query(
            TableName=self.table,
            KeyConditionExpression="member_id = :m",
            ExpressionAttributeValues=to_item({":m": member_id}),
            ConsistentRead=True,
        )
        return [from_item(item) for item in response.get("Items", [])]

    def cursor(self, name: str) -> str | None:
        response = self.client.get_item(
            TableName=self.table, Key=to_item({"member_id": PULL_MEMBER, "sync_key": name}), ConsistentRead=True
        )
        item = response.get("Item")
        return str(from_item(item)["cursor"]) if item else None

    def set_cursor(self, name: str, value: str) -> None:
        self.client.put_item(
            TableName=self.table, Item=to_item({"member_id": PULL_MEMBER, "sync_key": name, "cursor": value})
        )
