"""Meetup events and RSVPs (GraphQL `gql-ext` responses) to attendance activities.

Only events that have happened (status `PAST`) are read, and each member with a "yes" RSVP (or an
`ATTENDED` one, where the organizer took attendance) attended it. `NO`, `WAITLIST` and `NO_SHOW`
score nothing; an RSVP to an upcoming event is interest, not attendance, and is not read.

In person or online: `eventType` where the response has it (`PHYSICAL`, `ONLINE`, `HYBRID`);
otherwise the venues: Meetup lists an online event with a venue whose `venueType` is `online`
("Online event", with placeholder coordinates), so a real venue means in person, and an event with
both a real venue and the online one is hybrid. A hybrid event counts as in person (signal
`rsvp.yes.hybrid`, remappable); an event with no venue information at all is
`rsvp.yes.unknown_venue` (mapped to the virtual action: the lesser claim).

One person counts once per event: the event key is the event id and the member id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engagement.domain.activity import Account, Activity, Ignored, PayloadShapeError, identifier, parse_timestamp
from engagement.domain.taxonomy import Taxonomy

PLATFORM = "meetup"
ATTENDED = frozenset({"YES", "ATTENDED"})


def event_kind(event: dict[str, Any]) -> str:
    """`in_person`, `online`, `hybrid` or `unknown_venue` for an event node."""
    kind = str(event.get("eventType") or "").upper()
    if kind == "PHYSICAL":
        return "in_person"
    if kind == "ONLINE":
        return "online"
    if kind == "HYBRID":
        return "hybrid"
    venues = [v for v in event.get("venues") or ([event["venue"]] if isinstance(event.get("venue"), dict) else [])]
    venues = [v for v in venues if isinstance(v, dict)]
    online = any(str(v.get("venueType") or "").lower() == "online" for v in venues)
    physical = any(str(v.get("venueType") or "").lower() != "online" for v in venues)
    if online and physical:
        return "hybrid"
    if physical:
        return "in_person"
    if online:
        return "online"
    return "unknown_venue"


def classify_rsvp(
    event: dict[str, Any], rsvp: dict[str, Any], taxonomy: Taxonomy, read_at: datetime
) -> Activity | Ignored:
    """One RSVP node of a past event.

    Args:
        event: the event node (`id`, `dateTime`, and `eventType` or `venues` for its kind).
        rsvp: an RSVP edge's `node` (`id`, `member`, `status`).
        taxonomy: the mapping of `rsvp.yes.<kind>` signals.
        read_at: when the poller read it; the upper bound for the event's time.

    Raises:
        PayloadShapeError: the event or member has no id.
    """
    if not isinstance(rsvp, dict) or not isinstance(rsvp.get("member"), dict):
        raise PayloadShapeError("an RSVP must be an object with a member")
    event_id = identifier(event.get("id"), "the event id")
    member = rsvp["member"]
    # The RSVP queries of meetupr's attendee list omit `status`: every node listed there is a "yes".
    status = str(rsvp.get("status") or "YES").upper()
    if status not in ATTENDED:
        return Ignored("not_attending", f"RSVP {status} is not attendance")
    kind = event_kind(event)
    signal = f"rsvp.yes.{kind}"
    action = taxonomy.mapping.get(PLATFORM, {}).get(signal)
    if action is None:
        return Ignored("unmapped", f"meetup signal {signal} maps to no action")
    name = member.get("name") if isinstance(member.get("name"), str) else None
    account = Account(
        platform=PLATFORM,
        user_id=identifier(member.get("id"), "the member id"),
        handle=name,
        email=None,  # Meetup's API shares no member emails; identity comes from links (issue 5)
        display_name=name,
    )
    return Activity(
        event_id=f"{PLATFORM}:event:{event_id}:member:{account.user_id}",
        platform=PLATFORM,
        signal=signal,
        action=action,
        account=account,
        occurred_at=parse_timestamp(event.get("dateTime"), read_at),
        metadata={
            "event_id": event_id,
            "event_title": event.get("title"),
            "event_url": event.get("eventUrl"),
            "rsvp_id": rsvp.get("id"),
            "rsvp_status": status,
            "guests": rsvp.get("guestsCount"),
        },
    )
