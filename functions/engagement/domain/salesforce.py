"""Salesforce shapes, pure: the records we upsert and create, SOQL we send, and outcomes from what comes back.

No I/O here; `engagement.adapters.salesforce` does the HTTP. Field names are the custom fields an admin
creates once (README, "Salesforce"): a number, a text, two date/times, and the external id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from engagement.domain import outcomes
from engagement.domain.crm import MemberChange
from engagement.domain.outcomes import Outcome

CRM = "salesforce"
SCORE_FIELD = "Community_Score__c"  # Number(16, 2)
TIER_FIELD = "Community_Tier__c"  # Text(40)
TIER_CHANGED_AT_FIELD = "Community_Tier_Changed_At__c"  # Date/Time
LAST_ACTIVITY_AT_FIELD = "Community_Last_Activity_At__c"  # Date/Time

COLLECTION_LIMIT = 200  # sObject Collections take at most 200 records per request
SUBJECT_LIMIT = 255  # Task.Subject is a 255-character field
DESCRIPTION_LIMIT = 32_000  # Task.Description is a 32,000-character long text area
NAME_LIMIT = 80  # Contact/Lead LastName is 80 characters
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
QUEUE_ID_PREFIX = "00G"  # a Lead may be owned by a queue, which cannot own a Task


def external_id(change: MemberChange, source: str) -> str:
    """The value of the external-id field for this member: its member id, or its normalized email."""
    return change.member_id if source == "member_id" else change.email.strip().lower()


def split_name(name: str, email: str) -> tuple[str | None, str]:
    """(FirstName, LastName) from a display name; LastName is required, so fall back to the email's local part."""
    words = name.split()
    if not words or name.strip().lower() == email.strip().lower():
        return None, (email.split("@", 1)[0] or email)[:NAME_LIMIT]
    if len(words) == 1:
        return None, words[0][:NAME_LIMIT]
    return " ".join(words[:-1])[:40], words[-1][:NAME_LIMIT]


def upsert_record(
    change: MemberChange, *, sobject: str, external_id_field: str, external_id_source: str, lead_company: str
) -> dict[str, Any]:
    """One record of an sObject Collections upsert: type, external id, email, name, and the community fields."""
    first, last = split_name(change.name, change.email)
    record: dict[str, Any] = {
        "attributes": {"type": sobject},
        external_id_field: external_id(change, external_id_source),
        "Email": change.email.strip().lower(),
        "LastName": last,
        SCORE_FIELD: round(change.score, 2),
        TIER_FIELD: change.tier,
    }
    if first:
        record["FirstName"] = first
    if sobject == "Lead":
        record["Company"] = lead_company  # required on a Lead; Salesforce keeps any value sales has set since
    props = change.properties()
    if "community_tier_changed_at" in props:
        record[TIER_CHANGED_AT_FIELD] = props["community_tier_changed_at"]
    if "community_last_activity_at" in props:
        record[LAST_ACTIVITY_AT_FIELD] = props["community_last_activity_at"]
    return record


def item_failure(item: Any) -> str | None:
    """Why one item of a collection answer failed, or None when it succeeded.

    Salesforce answers 200 for the request and reports each record as `{"success": false, "errors":
    [{"statusCode": ..., "message": ..., "fields": [...]}]}`; anything not plainly a success is a failure.
    """
    if not isinstance(item, dict):
        return "Salesforce's answer for this record was not an object"
    if item.get("success") is True and item.get("id"):
        return None
    errors = item.get("errors") or []
    reasons = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            code = error.get("statusCode") or error.get("errorCode") or "UNKNOWN"
            fields = error.get("fields") or []
            where = f" (fields: {', '.join(map(str, fields))})" if fields else ""
            reasons.append(f"{code}: {error.get('message', '')}{where}")
    return "; ".join(reasons) or "Salesforce did not report this record as saved"


def error_codes(item: Any) -> set[str]:
    errors = item.get("errors") if isinstance(item, dict) else None
    return {str(e.get("statusCode") or e.get("errorCode")) for e in errors or [] if isinstance(e, dict)}


def is_record_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_RECORD_ID.match(value))


def task_record(contact_id: str, owner_id: str | None, change: MemberChange, today: date) -> dict[str, Any]:
    """The Task for a tier entry: on the contact (WhoId), for its owner, saying why."""
    record: dict[str, Any] = {
        "attributes": {"type": "Task"},
        "WhoId": contact_id,
        "Subject": change.task_subject()[:SUBJECT_LIMIT],
        "Description": change.task_body()[:DESCRIPTION_LIMIT],
        "Status": "Not Started",
        "Priority": "High" if change.tier == "Champion" else "Normal",
        "ActivityDate": today.isoformat(),
    }
    # Without OwnerId the Task belongs to the integration user; a queue-owned Lead keeps that default.
    if owner_id and not owner_id.startswith(QUEUE_ID_PREFIX):
        record["OwnerId"] = owner_id
    return record


def external_id_path(api_version: str, sobject: str, field: str, value: str) -> str:
    """`/services/data/vXX.X/sobjects/{SObject}/{Field}/{value}` with the value percent-encoded.

    An email (`+`, `@`) or any id with `/`, `?`, `#` or `%` would otherwise change the path or be read
    as a query string; `safe=""` encodes every one of them.
    """
    return f"/services/data/v{api_version}/sobjects/{sobject}/{field}/{quote(value, safe='')}"


# SOQL ----------------------------------------------------------------------------------------


def soql_datetime(moment: datetime) -> str:
    """A SOQL dateTime literal: unquoted ISO 8601 in UTC with a `Z` (`2026-12-01T12:00:00Z`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_string(value: str) -> str:
    """A quoted SOQL string literal, with backslashes and quotes escaped as SOQL requires."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


def soql_id_list(ids: Iterable[str]) -> str:
    """`('003...', '003...')` from record ids, refusing anything that is not one (it goes into SOQL)."""
    checked = []
    for value in ids:
        if not is_record_id(value):
            raise ValueError(f"not a Salesforce record id: {value!r}")
        checked.append(f"'{value}'")
    return "(" + ", ".join(checked) + ")"


def people_query(sobject: str, fields: Iterable[str], since: datetime) -> str:
    """Contacts (or Leads) changed since `since`, oldest change first, so a high-water mark can follow."""
    wanted = ", ".join(dict.fromkeys(["Id", "Email", "LastModifiedDate", *fields]))
    return (
        f"SELECT {wanted} FROM {sobject} WHERE LastModifiedDate >= {soql_datetime(since)} "
        "ORDER BY LastModifiedDate ASC, Id ASC"
    )


def won_opportunities_query(since: datetime, currency_field: str | None) -> str:
    fields = ["Id", "Amount", "CloseDate", "AccountId", "ContactId", "StageName", "LastModifiedDate"]
    if currency_field:
        fields.append(currency_field)
    return (
        f"SELECT {', '.join(fields)} FROM Opportunity WHERE IsWon = true "
        f"AND LastModifiedDate >= {soql_datetime(since)} ORDER BY LastModifiedDate ASC, Id ASC"
    )


def field_value(record: dict[str, Any], path: str) -> Any:
    """A field of a query record, following one relationship (`Account.Type`): None where any step is null."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def salesforce_time(value: Any) -> datetime | None:
    """Salesforce's dateTime (`2026-12-01T12:00:00.000+0000`) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def status_outcome(
    record: dict[str, Any], member_id: str, *, sobject: str, status_field: str, plan_field: str | None
) -> Outcome:
    """A Contact's (or Lead's) status, as its member's `status` outcome."""
    status = field_value(record, status_field)
    return Outcome(
        member_id=member_id,
        crm=CRM,
        object_type=sobject.lower(),
        object_id=str(record["Id"]),
        kind="status",
        updated_at=outcomes.iso_utc(record.get("LastModifiedDate")) or "",
        # A Lead's Status is where it is in the funnel; a Contact's configured field (its Account's Type by
        # default) says whether the company is a customer.
        lifecycle_stage=str(status) if status is not None and sobject == "Lead" else None,
        customer_status=str(status) if status is not None and sobject != "Lead" else None,
        plan=_text(field_value(record, plan_field)) if plan_field else None,
        contact_id=str(record["Id"]),
        company_id=_text(record.get("AccountId")),
    )


def deal_outcome(record: dict[str, Any], member_id: str, contact_id: str | None, currency_field: str | None) -> Outcome:
    """A closed-won Opportunity, as a `deal` outcome of a member linked through its contact or account."""
    return Outcome(
        member_id=member_id,
        crm=CRM,
        object_type="opportunity",
        object_id=str(record["Id"]),
        kind="deal",
        updated_at=outcomes.iso_utc(record.get("LastModifiedDate")) or "",
        lifecycle_stage=_text(record.get("StageName")),
        amount=outcomes.as_decimal(record.get("Amount")),
        currency=_text(field_value(record, currency_field)) if currency_field else None,
        close_date=outcomes.iso_date(record.get("CloseDate")),
        contact_id=contact_id,
        company_id=_text(record.get("AccountId")),
    )


def _text(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


# Set-up check ----------------------------------------------------------------------------------

# Field API name -> the describe `type`s that can hold it (Salesforce reports Number as "double").
REQUIRED_FIELDS = {
    SCORE_FIELD: ("double",),
    TIER_FIELD: ("string", "picklist"),
    TIER_CHANGED_AT_FIELD: ("datetime",),
    LAST_ACTIVITY_AT_FIELD: ("datetime",),
}


def setup_problems(describe: dict[str, Any], external_id_field: str) -> list[str]:
    """What is missing or wrong in an sObject describe for our upserts; empty when the object is ready.

    The describe lists only fields the integration user can see, and `updateable` says whether it may
    write them, so a field without field-level access shows as missing or read-only here.
    """
    fields = {f.get("name"): f for f in describe.get("fields") or [] if isinstance(f, dict)}
    sobject = describe.get("name", "the object")
    problems = []
    ext = fields.get(external_id_field)
    if ext is None:
        problems.append(f"{sobject}.{external_id_field} is missing (Text, External ID, Unique) or not visible")
    else:
        if not ext.get("externalId"):
            problems.append(f"{sobject}.{external_id_field} is not marked External ID")
        if not ext.get("updateable"):
            problems.append(f"{sobject}.{external_id_field} is read-only for the integration user")
    for name, types in REQUIRED_FIELDS.items():
        field = fields.get(name)
        if field is None:
            problems.append(f"{sobject}.{name} is missing or not visible to the integration user")
        elif field.get("type") not in types:
            problems.append(f"{sobject}.{name} is of type {field.get('type')}, expected {' or '.join(types)}")
        elif not field.get("updateable"):
            problems.append(f"{sobject}.{name} is read-only for the integration user")
    if describe.get("upsertable") is False or describe.get("createable") is False:
        problems.append(f"the integration user cannot create or upsert {sobject} records")
    return problems


PERMISSION_SET = "Community_Engagement_Sync"


def field_definitions(sobject: str, external_id_field: str) -> list[tuple[str, dict[str, Any]]]:
    """(FullName, Tooling API CustomField Metadata) for each field the sync writes, as docs/salesforce.md lists."""
    what = "Community engagement scoring"
    return [
        (
            f"{sobject}.{external_id_field}",
            {
                "label": "Community Member Id",
                "type": "Text",
                "length": 64,
                "externalId": True,
                "unique": True,
                "caseSensitive": True,
                "description": f"{what}: the member this record belongs to (the upsert key).",
            },
        ),
        (
            f"{sobject}.{SCORE_FIELD}",
            {
                "label": "Community Score",
                "type": "Number",
                "precision": 16,
                "scale": 2,
                "description": f"{what}: score.",
            },
        ),
        (
            f"{sobject}.{TIER_FIELD}",
            {"label": "Community Tier", "type": "Text", "length": 40, "description": f"{what}: tier."},
        ),
        (
            f"{sobject}.{TIER_CHANGED_AT_FIELD}",
            {
                "label": "Community Tier Changed At",
                "type": "DateTime",
                "description": f"{what}: when the tier changed.",
            },
        ),
        (
            f"{sobject}.{LAST_ACTIVITY_AT_FIELD}",
            {"label": "Community Last Activity At", "type": "DateTime", "description": f"{what}: last activity."},
        ),
    ]
