"""The OUTCOMES table: what the CRMs report back about members (see engagement.domain.outcomes)."""

from __future__ import annotations

import time
from typing import Any

from engagement.adapters.dynamo import from_item, to_item
from engagement.domain.outcomes import Outcome
from engagement.settings import Settings

BATCH_WRITE_LIMIT = 25  # DynamoDB's BatchWriteItem takes at most 25 requests
UNPROCESSED_ATTEMPTS = 5


class OutcomeStore:
    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self.client = client

    @property
    def table(self) -> str:
        return self.settings.outcomes_table

    def put_outcomes(self, outcomes: list[Outcome]) -> int:
        """Write (or overwrite) each outcome's item; returns how many were written.

        Within one call an outcome id that appears twice for a member keeps its last value
        (BatchWriteItem refuses duplicate keys in one request).
        """
        unique = {(o.member_id, o.outcome_id): o for o in outcomes}
        items = [o.as_item() for o in unique.values()]
        for start in range(0, len(items), BATCH_WRITE_LIMIT):
            requests = [{"PutRequest": {"Item": to_item(item)}} for item in items[start : start + BATCH_WRITE_LIMIT]]
            self._write(requests)
        return len(items)

    def _write(self, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, list[dict[str, Any]]] = {self.table: requests}
        for attempt in range(UNPROCESSED_ATTEMPTS):
            answer = self.client.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(2.0, 0.1 * 2**attempt))
        raise RuntimeError(f"DynamoDB left {len(pending.get(self.table, []))} outcome writes unprocessed")

    def outcomes_of(self, member_id: str) -> list[dict[str, Any]]:
        answer = self.client.query(
            TableName=self.table,
            KeyConditionExpression="member_id = :m",
            ExpressionAttributeValues={":m": {"S": member_id}},
            ConsistentRead=True,
        )
        return [from_item(item) for item in answer.get("Items", [])]

    # A cursor (a pull's high-water mark) lives in its own partition of this table, `#cursor`, so the
    # Salesforce pull needs no table of its own; no member id starts with `#`.
    CURSOR_PARTITION = "#cursor"

    def get_cursor(self, name: str) -> str | None:
        answer = self.client.get_item(
            TableName=self.table,
            Key={"member_id": {"S": self.CURSOR_PARTITION}, "outcome_id": {"S": name}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return item["value"]["S"] if item and "value" in item else None

    def put_cursor(self, name: str, value: str) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={"member_id": {"S": self.CURSOR_PARTITION}, "outcome_id": {"S": name}, "value": {"S": value}},
        )
