"""Bevy webhook deliveries to attendance activities.

Bevy publishes no webhook reference. What is known comes from the one public receiver, the
discourse-bevy-plugin (github.com/discourse/discourse-bevy-plugin, its controller and fixtures):
- the body is a JSON **array** of groups, `[{"type": "attendee" | "event", "data": [...]}]`;
- the request carries the shared secret itself in `X-BEVY-SECRET` (no HMAC, no timestamp);
- an attendee has `id`, `user_id`, `email`, `first_name`, `last_name`, `event_id`, `status`
  (`registered`, `deleted`), `checkin_date` (null until checked in, ISO 8601 `Z`), and
  `ticket_audience_type_enum_value` (`Virtual` in the fixture).

Mapping (assumptions, documented in docs/mapping.md): an attendee with a `checkin_date` and not
deleted attended. `ticket_audience_type_enum_value` says how: `Virtual` (or `Online`) is an online
attendance, `In-Person`/`In Person`/`InPerson`/`Physical` in person; anything else (`Hybrid`,
missing) is `attendee_checked_in.unknown`, mapped by default to the virtual action, the lower one.
A check-in counts once per (event, person): key `bevy:event:<event id>:attendee:<user id or email>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engagement.domain.activity import (
    Account,
    Activity,
    Ignored,
    PayloadShapeError,
    identifier,
    normalize_email,
    parse_timestamp,
)
from engagement.domain.taxonomy import Taxonomy

PLATFORM = "bevy"
ONLINE = frozenset({"virtual", "online"})
IN_PERSON = frozenset({"in-person", "in person", "inperson", "in_person", "physical"})
MAX_ITEMS = 1000


def audience(raw: Any) -> str:
    """`online`, `in_person` or `unknown` from Bevy's ticket audience type."""
    text = raw.strip().lower() if isinstance(raw, str) else ""
    if text in ONLINE:
        return "online"
    if text in IN_PERSON:
        return "in_person"
    return "unknown"


def classify(groups: Any, taxonomy: Taxonomy, received_at: datetime) -> list[tuple[Any, Activity | Ignored]]:
    """One (entry, outcome) pair per attendee in the delivery, and one per group that carries no attendees.

    Raises:
        PayloadShapeError: the body is not a list of `{"type", "data": [...]}` groups, or has
            more than `MAX_ITEMS` entries in all.
    """
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise PayloadShapeError('a Bevy delivery is a JSON array of {"type": ..., "data": [...]} groups')
    total = sum(len(g.get("data") or []) for g in groups if isinstance(g.get("data"), list))
    if total > MAX_ITEMS:
        raise PayloadShapeError(f"the delivery holds {total} entries; at most {MAX_ITEMS} are accepted at once")
    outcomes: list[tuple[Any, Activity | Ignored]] = []
    for group in groups:
        data = group.get("data")
        if not isinstance(data, list):
            raise PayloadShapeError("a Bevy group's data must be a list")
        if group.get("type") != "attendee":
            outcomes.append(
                (None, Ignored("no_mapping", f"Bevy {group.get('type')!r} data carries no member activity"))
            )
            continue
        outcomes.extend((a, _attendee(a, taxonomy, received_at)) for a in data)
    return outcomes


def _attendee(attendee: Any, taxonomy: Taxonomy, received_at: datetime) -> Activity | Ignored:
    if not isinstance(attendee, dict):
        return Ignored("unexpected_shape", "an attendee entry is not an object")
    if attendee.get("status") == "deleted" or attendee.get("deleted_date") and not attendee.get("checkin_date"):
        return Ignored("not_attended", "a cancelled registration is not attendance")
    if not attendee.get("checkin_date"):
        return Ignored("not_attended", "registered but not checked in (yet)")
    email = normalize_email(attendee.get("email"))
    person = attendee.get("user_id") if attendee.get("user_id") is not None else email
    if person is None:
        return Ignored("no_user", "the attendee has neither a Bevy user id nor an email")
    event_id = identifier(attendee.get("event_id"), "attendee.event_id")
    user_id = identifier(person, "attendee.user_id")
    name = " ".join(str(attendee.get(k) or "").strip() for k in ("first_name", "last_name")).strip() or None
    account = Account(PLATFORM, user_id, handle=name or email or user_id, email=email, display_name=name)
    how = audience(attendee.get("ticket_audience_type_enum_value"))
    signal = f"attendee_checked_in.{how}"
    action = taxonomy.mapping.get(PLATFORM, {}).get(signal)
    if action is None:
        return Ignored("not_scored", f"bevy {signal} maps to no action", account=account)
    meta = {"event_id": event_id, "ticket": attendee.get("ticket_title"), "audience": how}
    return Activity(
        f"{PLATFORM}:event:{event_id}:attendee:{user_id}",
        PLATFORM,
        signal,
        action,
        account,
        parse_timestamp(attendee.get("checkin_date"), received_at),
        meta,
    )
