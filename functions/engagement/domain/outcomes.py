"""What a CRM says became of a member: lifecycle stage or customer status, plan, closed-won deals.

One `Outcome` per CRM object and member, stored in the outcomes table under
`outcome_id = <crm>:<object type>:<object id>` (`hubspot:deal:123`, `salesforce:contact:003...`).
Plain dataclasses, no AWS imports: the CRM adapters build them, `adapters.outcomes.OutcomeStore` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

KINDS = ("status", "deal")


class OutcomeError(ValueError):
    """An outcome whose fields cannot be stored as they are."""


@dataclass(frozen=True)
class Outcome:
    member_id: str
    crm: str
    object_type: str
    object_id: str
    kind: str  # "status" (contact/lead/account state) or "deal" (a closed-won deal or opportunity)
    updated_at: str  # ISO 8601 UTC: when the CRM last changed the object
    lifecycle_stage: str | None = None
    customer_status: str | None = None
    plan: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    close_date: str | None = None  # ISO date (YYYY-MM-DD)
    contact_id: str | None = None
    company_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise OutcomeError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for name in ("member_id", "crm", "object_type", "object_id"):
            value = getattr(self, name)
            if not value or (":" in value and name != "member_id"):
                raise OutcomeError(f"{name} must be a non-empty value without ':', not {value!r}")
        try:
            datetime.fromisoformat(self.updated_at.replace("Z", "+00:00"))
        except (AttributeError, ValueError):
            raise OutcomeError(f"updated_at must be an ISO 8601 time, not {self.updated_at!r}") from None
        if self.close_date is not None:
            try:
                date.fromisoformat(self.close_date)
            except ValueError:
                raise OutcomeError(f"close_date must be an ISO date (YYYY-MM-DD), not {self.close_date!r}") from None
        if self.amount is not None and not isinstance(self.amount, Decimal):
            raise OutcomeError("amount must be a Decimal (DynamoDB numbers are exact)")

    @property
    def outcome_id(self) -> str:
        return f"{self.crm}:{self.object_type}:{self.object_id}"

    def as_item(self) -> dict[str, Any]:
        """The outcomes table item (attributes as reserved in COORDINATION.md); None values are left out."""
        item: dict[str, Any] = {
            "member_id": self.member_id,
            "outcome_id": self.outcome_id,
            "crm": self.crm,
            "kind": self.kind,
            "lifecycle_stage": self.lifecycle_stage,
            "customer_status": self.customer_status,
            "plan": self.plan,
            "amount": self.amount,
            "currency": self.currency,
            "close_date": self.close_date,
            "contact_id": self.contact_id,
            "company_id": self.company_id,
            "updated_at": self.updated_at,
        }
        return {k: v for k, v in item.items() if v is not None}


def as_decimal(value: Any) -> Decimal | None:
    """A CRM amount ("1500.50", 1500.5, None, "") as an exact Decimal, or None when absent or not a number."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def iso_utc(value: Any) -> str | None:
    """A CRM timestamp (ISO 8601, or epoch milliseconds as HubSpot's v1 properties give) as ISO 8601 UTC."""
    from datetime import UTC

    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC).isoformat(timespec="milliseconds")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def iso_date(value: Any) -> str | None:
    """The UTC calendar date of a CRM close date (ISO time or date, or epoch milliseconds)."""
    moment = iso_utc(value)
    return moment[:10] if moment else None
