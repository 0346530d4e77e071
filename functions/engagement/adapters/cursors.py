"""Poller cursors in DynamoDB: where each (platform, stream) resumes.

One item per cursor id (`discord:channel:123`, `circle:posts`, `backfill:2026-01-01:meetup:group:x`),
holding the source's state as JSON and a version. Every write is conditional on the version it
read, so two runs of one poller (a slow scheduled run overlapping the next, or a backfill beside
the schedule on the same cursor) can never move a cursor backwards: the loser stops and the next
run resumes from whatever the winner stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from engagement.adapters.dynamo import from_item, to_item
from engagement.settings import Settings


class CursorConflict(RuntimeError):
    """Another run moved this cursor since we read it."""


@dataclass(frozen=True)
class Cursor:
    cursor_id: str
    state: dict[str, Any]
    version: int
    updated_at: str | None = None


class CursorStore:
    def __init__(self, settings: Settings, client: Any) -> None:
        self.table = settings.cursors_table
        self.client = client

    def get(self, cursor_id: str) -> Cursor | None:
        response = self.client.get_item(
            TableName=self.table, Key=to_item({"cursor_id": cursor_id}), ConsistentRead=True
        )
        if "Item" not in response:
            return None
        item = from_item(response["Item"])
        return Cursor(cursor_id, json.loads(item["state"]), int(item["version"]), item.get("updated_at"))

    def put(self, cursor_id: str, state: dict[str, Any], expected_version: int | None, now: datetime) -> int:
        """Store `state` if the cursor is still at `expected_version` (None: not yet created); the new version.

        Raises:
            CursorConflict: the cursor was created or moved by another run meanwhile.
        """
        version = (expected_version or 0) + 1
        condition: dict[str, Any]
        if expected_version is None:
            condition = {"ConditionExpression": "attribute_not_exists(cursor_id)"}
        else:
            condition = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": to_item({":v": expected_version}),
            }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(
                    {
                        "cursor_id": cursor_id,
                        "state": json.dumps(state, sort_keys=True),
                        "version": version,
                        "updated_at": now.isoformat(),
                    }
                ),
                **condition,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise CursorConflict(f"cursor {cursor_id} was moved by another run") from error
            raise
        return version
