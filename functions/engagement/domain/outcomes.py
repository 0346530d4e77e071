"""What a CRM says became of a member: a status (lifecycle stage, customer status, plan) or a won deal.

One `Outcome` is one item of the OUTCOMES table: partition `member_id`, sort `outcome_id` =
`<crm>:<object type>:<object id>` (`salesforce:contact:003...`, `salesforce:opportunity:006...`),
so a pull that sees the same CRM record again overwrites its item instead of adding one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

KINDS = ("status", "deal")


@dataclass(frozen=True)
class Outcome:
    member_id: str
    crm: str
    object_type: str
    object_id: str
    kind: str
    updated_at: str  # ISO 8601 UTC, when the CRM last changed the record
    lifecycle_stage: str | None = None
    customer_status: str | None = None
    plan: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    close_date: str | None = None  # ISO date
    contact_id: str | None = None
    company_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"an outcome's kind is one of {', '.join(KINDS)}, not {self.kind!r}")
        for name in ("member_id", "crm", "object_type", "object_id", "updated_at"):
            if not getattr(self, name):
                raise ValueError(f"an outcome needs a {name}")

    @property
    def outcome_id(self) -> str:
        return f"{self.crm}:{self.object_type}:{self.object_id}"

    def as_item(self) -> dict[str, Any]:
        """The table item: every attribute that has a value (DynamoDB stores no empty strings usefully)."""
        item: dict[str, Any] = {
            "member_id": self.member_id,
            "outcome_id": self.outcome_id,
            "crm": self.crm,
            "kind": self.kind,
            "updated_at": self.updated_at,
        }
        for name in (
            "lifecycle_stage",
            "customer_status",
            "plan",
            "amount",
            "currency",
            "close_date",
            "contact_id",
            "company_id",
        ):
            value = getattr(self, name)
            if value is not None and value != "":
                item[name] = value
        return item
