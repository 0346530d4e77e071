"""POST /events: batches of normalized events from any other source (a form, a script, a blog).

Each item is the SPEC's normalized schema with an id of its own:
`{"id", "user_id", "email"?, "name"?, "action_type", "timestamp", "metadata"?}` (see
docs/events-api.yaml). `action_type` goes through the taxonomy's `mapping.events`, so an
operator can remap or silence a type; a type the mapping lacks is rejected. An item is stored
once per (source, id): the same id sent again, in this batch or a later one, is a duplicate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engagement.domain.activity import Account, Activity, Ignored, email_and_links, is_identifier, parse_timestamp
from engagement.domain.taxonomy import Taxonomy

PLATFORM = "events"
MAX_BATCH = 100
SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
ITEM_KEYS = frozenset(
    {"id", "user_id", "email", "email_verified", "sso_subject", "name", "action_type", "timestamp", "metadata"}
)
# A sender's clock may run a little ahead of ours; further ahead is a mistake, not an event.
FUTURE_TOLERANCE = timedelta(minutes=5)


class BatchError(ValueError):
    """The batch as a whole cannot be read (answered 400/413 with `code`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Rejected:
    """One item we refuse; the others in the batch go on."""

    reason: str


def valid_source(source: str | None) -> bool:
    return isinstance(source, str) and bool(SOURCE_PATTERN.match(source))


def items_of(payload: dict[str, Any]) -> list[Any]:
    """The batch's items.

    Raises:
        BatchError: no `events` list, an empty one, or more than `MAX_BATCH` items (`too_many_events`).
    """
    items = payload.get("events")
    if not isinstance(items, list):
        raise BatchError("unexpected_shape", 'the body must be {"events": [...]}')
    if not items:
        raise BatchError("empty_batch", "the batch holds no events")
    if len(items) > MAX_BATCH:
        raise BatchError("too_many_events", f"the batch holds {len(items)} events; at most {MAX_BATCH} per request")
    return items


def classify(source: str, item: Any, taxonomy: Taxonomy, received_at: datetime) -> Activity | Ignored | Rejected:
    """One item to an activity, an ignored type (mapped to null), or a rejection with its reason."""
    if not isinstance(item, dict):
        return Rejected("an event must be a JSON object")
    unknown = sorted(set(item) - ITEM_KEYS)
    if unknown:
        return Rejected(f"unknown fields: {', '.join(unknown)}")
    if not is_identifier(item.get("id")) or isinstance(item.get("id"), int):
        return Rejected("id must be a string of 1 to 128 characters")
    if not is_identifier(item.get("user_id")) or isinstance(item.get("user_id"), int):
        return Rejected("user_id must be a string of 1 to 128 characters")
    email, links = None, ()
    if item.get("email") is not None:
        email, links = email_and_links(item["email"])
        if email is None and not links:
            return Rejected("email is not an email address")
    verified = item.get("email_verified", True)
    if not isinstance(verified, bool):
        return Rejected("email_verified must be true or false")
    sso = item.get("sso_subject")
    if sso is not None and not is_identifier(sso):
        return Rejected("sso_subject must be a string of 1 to 128 characters")
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 128):
        return Rejected("name must be a non-empty string of at most 128 characters")
    mapping = taxonomy.mapping.get(PLATFORM, {})
    action_type = item.get("action_type")
    if not isinstance(action_type, str) or action_type not in mapping:
        return Rejected(f"action_type must be one of: {', '.join(sorted(mapping))}")
    moment = _timestamp(item.get("timestamp"), received_at)
    if isinstance(moment, Rejected):
        return moment
    metadata = item.get("metadata", {})
    if not isinstance(metadata, dict):
        return Rejected("metadata must be an object")

    user_id = f"{source}/{item['user_id']}"
    account = Account(
        PLATFORM,
        user_id,
        handle=user_id,
        email=email,
        display_name=name.strip() if isinstance(name, str) else None,
        email_verified=verified,
        sso_subject=str(sso) if sso is not None else None,
        profile_links=links,
    )
    action = mapping[action_type]
    if action is None:
        return Ignored("not_scored", f"action_type {action_type} maps to no action", account=account)
    meta = {**{k: v for k, v in metadata.items() if isinstance(k, str)}, "source": source, "id": item["id"]}
    return Activity(f"{PLATFORM}:{source}:{item['id']}", PLATFORM, action_type, action, account, moment, meta)


def _timestamp(raw: Any, received_at: datetime) -> datetime | Rejected:
    if not isinstance(raw, str) or not raw:
        return Rejected("timestamp must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return Rejected(f"timestamp {raw[:40]!r} is not ISO 8601")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # the documented rule: a time without an offset is UTC
    if parsed > received_at + FUTURE_TOLERANCE:
        return Rejected("timestamp is in the future")
    return parse_timestamp(raw, received_at)  # a naive time is UTC; clamped to receipt
