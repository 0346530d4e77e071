"""The outcomes table as reserved for both CRMs: keys, attributes, and newer-wins writes."""

from __future__ import annotations

from decimal import Decimal

import boto3
import pytest

from engagement.adapters.outcomes import OutcomeStore
from engagement.domain.outcomes import Outcome, OutcomeError, iso_date, iso_utc
from engagement.settings import Settings


def deal(updated_at: str, amount: str = "1200.50") -> Outcome:
    return Outcome(
        member_id="m1",
        crm="hubspot",
        object_type="deal",
        object_id="123",
        kind="deal",
        updated_at=updated_at,
        amount=Decimal(amount),
        currency="EUR",
        close_date="2026-11-30",
        contact_id="501",
    )


def test_outcome_id_and_item_follow_the_reserved_names():
    item = deal("2026-12-01T10:00:00.000+00:00").as_item()
    assert item == {
        "member_id": "m1",
        "outcome_id": "hubspot:deal:123",
        "crm": "hubspot",
        "kind": "deal",
        "amount": Decimal("1200.50"),
        "currency": "EUR",
        "close_date": "2026-11-30",
        "contact_id": "501",
        "updated_at": "2026-12-01T10:00:00.000+00:00",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", "won"), ("object_id", ""), ("crm", "hub:spot"), ("updated_at", "yesterday"), ("close_date", "30/11")],
)
def test_unstorable_outcomes_are_refused(field, value):
    values = {
        "member_id": "m1",
        "crm": "hubspot",
        "object_type": "contact",
        "object_id": "9",
        "kind": "status",
        "updated_at": "2026-12-01T10:00:00Z",
        field: value,
    }
    with pytest.raises(OutcomeError):
        Outcome(**values)


def test_crm_times_become_iso_utc():
    assert iso_utc("1796119200000") == "2026-12-01T10:00:00.000+00:00"
    assert iso_utc("2026-12-01T11:00:00+01:00") == "2026-12-01T10:00:00.000+00:00"
    assert iso_date("2026-11-30T23:30:00Z") == "2026-11-30"
    assert iso_utc("") is None


def test_a_newer_state_is_never_replaced_by_an_older_one(stack):
    store = OutcomeStore(Settings.from_env(), boto3.client("dynamodb", endpoint_url=stack.endpoint))
    assert store.put_outcomes([deal("2026-12-01T10:00:00.000+00:00", "100")]) == 1
    assert store.put_outcomes([deal("2026-12-01T09:00:00.000+00:00", "50")]) == 0
    assert store.put_outcomes([deal("2026-12-01T11:00:00.000+00:00", "150")]) == 1
    [stored] = store.outcomes_of("m1")
    assert stored["amount"] == Decimal("150")
    assert store.forget("m1") == 1
    assert store.outcomes_of("m1") == []
