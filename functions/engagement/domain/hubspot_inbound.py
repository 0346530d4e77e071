"""HubSpot -> us: webhook signature v3, webhook event batches, and CRM objects as outcomes. No I/O here.

Signature v3 (HubSpot's "Validating requests" guide): `X-HubSpot-Signature-v3` is the base64 of
HMAC-SHA256, keyed with the app's client secret, over the UTF-8 string
`method + uri + body + timestamp`, where `uri` is the full URL HubSpot called (scheme, host, path,
query) with a fixed set of percent-escapes decoded, and `timestamp` is `X-HubSpot-Request-Timestamp`
(milliseconds since the epoch). Requests more than 5 minutes old are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engagement.domain.outcomes import Outcome, as_decimal, iso_date, iso_utc

CRM = "hubspot"
MAX_AGE_MS = 5 * 60 * 1000
MAX_EVENTS = 100  # HubSpot sends at most 100 events per webhook request
# The percent-escapes HubSpot decodes in the URI before signing (and only these).
URI_DECODES = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
CONTACT_PROPERTIES = ("email", "lifecyclestage", "associatedcompanyid", "lastmodifieddate")
DEAL_PROPERTIES = ("amount", "closedate", "deal_currency_code", "dealstage", "hs_is_closed_won", "hs_lastmodifieddate")


class SignatureError(Exception):
    """The request is not signed by HubSpot as v3 requires (`malformed` when a header cannot be read)."""

    def __init__(self, message: str, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


def canonical_uri(uri: str) -> str:
    for escaped, char in URI_DECODES.items():
        uri = uri.replace(escaped, char).replace(escaped.lower(), char)
    return uri


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    source = method.upper() + canonical_uri(uri) + body.decode("utf-8") + timestamp
    digest = hmac.new(secret.encode("utf-8"), source.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_v3(
    secret: str, method: str, uri: str, body: bytes, signature: str | None, timestamp: str | None, now_ms: int
) -> None:
    """Check a v3 signature and its 5-minute window.

    Raises:
        SignatureError: missing or wrong signature, unreadable or out-of-window timestamp, body not UTF-8.
    """
    if not signature or not timestamp:
        raise SignatureError("the X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp headers are required")
    if not timestamp.isdigit() or len(timestamp) > 16:
        raise SignatureError("X-HubSpot-Request-Timestamp must be milliseconds since the epoch", malformed=True)
    if abs(now_ms - int(timestamp)) > MAX_AGE_MS:
        raise SignatureError("the request timestamp is more than 5 minutes away from now (stale or replayed)")
    try:
        expected = sign_v3(secret, method, uri, body, timestamp)
    except UnicodeDecodeError:
        raise SignatureError("the body is not UTF-8", malformed=True) from None
    if not hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("ascii", "replace")):
        raise SignatureError("the X-HubSpot-Signature-v3 signature does not match the request")


class EventsError(ValueError):
    """A webhook body that is not a batch of HubSpot events."""


@dataclass(frozen=True)
class WebhookBatch:
    contact_ids: tuple[str, ...]
    deal_ids: tuple[str, ...]
    ignored: int


def parse_events(payload: Any) -> WebhookBatch:
    """Which contacts and deals a webhook batch is about (deletions and other objects are ignored).

    Raises:
        EventsError: not a list of event objects with `subscriptionType` and a numeric `objectId`.
    """
    if not isinstance(payload, list) or not payload:
        raise EventsError("the body must be a non-empty JSON array of HubSpot events")
    if len(payload) > MAX_EVENTS:
        raise EventsError(f"HubSpot sends at most {MAX_EVENTS} events per request, this body has {len(payload)}")
    contacts: list[str] = []
    deals: list[str] = []
    ignored = 0
    for index, event in enumerate(payload):
        if not isinstance(event, dict):
            raise EventsError(f"event {index} is not an object")
        kind = event.get("subscriptionType")
        object_id = event.get("objectId")
        if not isinstance(kind, str) or "." not in kind:
            raise EventsError(f"event {index} has no subscriptionType such as contact.creation")
        if isinstance(object_id, bool) or not isinstance(object_id, int | str) or not str(object_id).isdigit():
            raise EventsError(f"event {index} has no numeric objectId")
        object_type, _, action = kind.partition(".")
        if action in ("deletion", "privacyDeletion", "restore", "merge", "associationChange"):
            ignored += 1
        elif object_type == "contact":
            contacts.append(str(object_id))
        elif object_type == "deal":
            deals.append(str(object_id))
        else:
            ignored += 1
    return WebhookBatch(tuple(dict.fromkeys(contacts)), tuple(dict.fromkeys(deals)), ignored)


def normalized_email(value: Any) -> str | None:
    email = str(value or "").strip().lower()
    return email if "@" in email else None


def contact_outcome(member_id: str, contact: dict[str, Any], plan_property: str | None) -> Outcome | None:
    """A contact's lifecycle stage (and plan, where the account keeps one in a property) as a status outcome."""
    props = contact.get("properties") or {}
    updated = iso_utc(props.get("lastmodifieddate") or contact.get("updatedAt"))
    if not updated:
        return None
    return Outcome(
        member_id=member_id,
        crm=CRM,
        object_type="contact",
        object_id=str(contact["id"]),
        kind="status",
        updated_at=updated,
        lifecycle_stage=props.get("lifecyclestage") or None,
        plan=(props.get(plan_property) or None) if plan_property else None,
        contact_id=str(contact["id"]),
        company_id=props.get("associatedcompanyid") or None,
    )


def is_closed_won(deal: dict[str, Any]) -> bool:
    props = deal.get("properties") or {}
    return str(props.get("hs_is_closed_won") or "").lower() == "true" or props.get("dealstage") == "closedwon"


def deal_outcome(
    member_id: str, deal: dict[str, Any], contact: dict[str, Any], company_id: str | None = None
) -> Outcome | None:
    """A closed-won deal of a member's contact, or of its company (`company_id`), as a deal outcome."""
    props = deal.get("properties") or {}
    updated = iso_utc(props.get("hs_lastmodifieddate") or deal.get("updatedAt"))
    if not updated or not is_closed_won(deal):
        return None
    return Outcome(
        member_id=member_id,
        crm=CRM,
        object_type="deal",
        object_id=str(deal["id"]),
        kind="deal",
        updated_at=updated,
        amount=as_decimal(props.get("amount")),
        currency=props.get("deal_currency_code") or None,
        close_date=iso_date(props.get("closedate")),
        contact_id=str(contact["id"]),
        company_id=company_id or (contact.get("properties") or {}).get("associatedcompanyid") or None,
    )


def chunks(values: Iterable[str], size: int = 100) -> Iterable[list[str]]:
    batch: list[str] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
