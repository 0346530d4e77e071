"""Where the Salesforce pull keeps its high-water mark until the CRM sync-state table is on main.

Same two methods as the sync-state store's cursor (`cursor`, `set_cursor`), so the pull can take either;
here the mark is one item in the outcomes table's `#cursor` partition (no member id starts with `#`).
"""

from __future__ import annotations

from typing import Any

CURSOR_PARTITION = "#cursor"


class PullCursors:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def cursor(self, name: str) -> str | None:
        answer = self.client.get_item(
            TableName=self.table,
            Key={"member_id": {"S": CURSOR_PARTITION}, "outcome_id": {"S": name}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return item["cursor"]["S"] if item and "cursor" in item else None

    def set_cursor(self, name: str, value: str) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={"member_id": {"S": CURSOR_PARTITION}, "outcome_id": {"S": name}, "cursor": {"S": value}},
        )
