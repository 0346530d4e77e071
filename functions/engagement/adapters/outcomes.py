"""The outcomes table: what CRMs report back, one item per (member, CRM object).

Writes are conditional on `updated_at`, so a redelivered webhook or an overlapping pull never
replaces a newer state of the object with an older one.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from engagement.adapters.dynamo import from_item, to_item
from engagement.domain.outcomes import Outcome
from engagement.settings import Settings


class OutcomeStore:
    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self.client = client

    @property
    def table(self) -> str:
        return self.settings.outcomes_table

    def put_outcomes(self, outcomes: list[Outcome]) -> int:
        """Store each outcome unless the table already holds a newer state of it; returns how many were written."""
        written = 0
        for outcome in outcomes:
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item=to_item(outcome.as_item()),
                    ConditionExpression="attribute_not_exists(outcome_id) OR updated_at <= :u",
                    ExpressionAttributeValues=to_item({":u": outcome.updated_at}),
                )
                written += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
        return written

    def outcomes_of(self, member_id: str) -> list[dict[str, Any]]:
        """Every outcome stored for a member, oldest object id first."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "member_id = :m",
            "ExpressionAttributeValues": to_item({":m": member_id}),
        }
        for page in self.client.get_paginator("query").paginate(**kwargs):
            items.extend(from_item(item) for item in page.get("Items", []))
        return items

    def forget(self, member_id: str) -> int:
        """Delete a member's outcomes (for erasure); returns how many were deleted."""
        items = self.outcomes_of(member_id)
        for item in items:
            self.client.delete_item(
                TableName=self.table, Key=to_item({"member_id": member_id, "outcome_id": item["outcome_id"]})
            )
        return len(items)
