"""What a delivery becomes: an activity to score, or a reason to ignore it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

METADATA_MAX_BYTES = 4_096
METADATA_MAX_STRING = 256
METADATA_MAX_LIST = 20
NOREPLY_SUFFIX = "@users.noreply.github.com"


MAX_ID_CHARS = 128


class PayloadShapeError(ValueError):
    """The payload is JSON but not shaped like the event its headers name (answered 400)."""


def is_identifier(value: Any) -> bool:
    """An id as platforms send them: an integer, or a short non-empty string."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and value.strip() == value


def identifier(value: Any, what: str) -> str:
    """`value` as an id string.

    Raises:
        PayloadShapeError: `value` is missing, not an integer or short string.
    """
    if not is_identifier(value):
        raise PayloadShapeError(f"{what} is missing or is not an id")
    return str(value)


@dataclass(frozen=True)
class Account:
    """One person's account on one platform."""

    platform: str
    user_id: str
    handle: str | None = None
    email: str | None = None
    display_name: str | None = None  # a person's name where the platform shares it (Discourse user events)
    # False where nobody confirmed the address (a comment form): it then only suggests, never links (issue 5).
    email_verified: bool = True
    sso_subject: str | None = None
    # Other accounts this account's own profile names: (platform, user id or handle), e.g. ("github", "octocat")
    # from a Discourse profile field, or ("github", "583231") from a GitHub noreply address.
    profile_links: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


def profile_links(values: object, fields: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Accounts a profile's own fields name, by the operator's `identity.profile_fields` (field -> platform).

    A GitHub field holds a login (kept as `@login`, resolved through the handle index); any other platform's
    field holds that platform's user id.
    """
    if not isinstance(values, dict) or not fields:
        return ()
    links = []
    for name, platform in fields.items():
        value = values.get(name)
        if isinstance(value, str) and value.strip() and len(value) <= MAX_ID_CHARS:
            value = value.strip().lstrip("@")
            links.append((platform, f"@{value.lower()}" if platform == "github" else value))
    return tuple(links)


def email_and_links(raw: object) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """A payload's address as (usable email, profile links): a GitHub noreply address is no email but names
    the GitHub account it belongs to (`583231+octocat@users.noreply.github.com` is GitHub account 583231)."""
    if isinstance(raw, str) and raw.strip().lower().endswith(NOREPLY_SUFFIX):
        from engagement.domain.identity import github_noreply

        user_id, login = github_noreply(raw)
        if user_id:
            return None, (("github", user_id),)
        return None, ((("github", f"@{login}"),) if login else ())
    return normalize_email(raw), ()


@dataclass(frozen=True)
class Activity:
    """A delivery that maps to a scoring action, before identity resolution."""

    event_id: str
    platform: str
    signal: str
    action: str
    account: Account
    occurred_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    # A topic (or other item) whose author later replies are compared with: (key, account key).
    registers_owner: tuple[str, str] | None = None


@dataclass(frozen=True)
class Ignored:
    """A delivery that maps to no action; `reason` says why, in words for the sender and the log."""

    code: str
    reason: str
    # An account (with its email) learned from a delivery that is not itself scored.
    account: Account | None = None


@dataclass(frozen=True)
class Withdrawal:
    """A delivery that takes back what an earlier event earned (a deleted Slack message).

    `event_id` is the key the earlier event was (or, arriving out of order, would be) stored under.
    """

    event_id: str
    platform: str
    signal: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class NormalizedEvent:
    """The one schema every accepted delivery becomes, as stored in the events table."""

    event_id: str
    member_id: str
    action: str
    platform: str
    account: str
    handle: str | None
    signal: str
    occurred_at: datetime
    received_at: datetime
    points: float
    half_life_seconds: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.event_id or len(self.event_id) > 512:
            raise ValueError("event_id must be 1 to 512 characters")
        for name in ("occurred_at", "received_at"):
            moment = getattr(self, name)
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"{name} must carry a UTC offset")
        if self.half_life_seconds <= 0:
            raise ValueError("half_life_seconds must be positive")

    def as_record(self) -> dict[str, Any]:
        """The event as a JSON-friendly record, timestamps in UTC ISO 8601."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["occurred_at"] = self.occurred_at.astimezone(UTC).isoformat()
        record["received_at"] = self.received_at.astimezone(UTC).isoformat()
        return record


def normalize_email(raw: object) -> str | None:
    """A trimmed, lower-cased address, or None for anything that is not a usable address.

    GitHub's noreply addresses (`123+login@users.noreply.github.com`) reach no inbox and identify
    no CRM contact, so they are not treated as emails here.
    """
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or " " in email or email.endswith(NOREPLY_SUFFIX):
        return None
    return email


def parse_timestamp(raw: object, fallback: datetime) -> datetime:
    """An aware UTC datetime from an ISO 8601 string or epoch seconds; `fallback` if absent or bad.

    A value without an offset is read as UTC, and a moment later than `fallback` (the time we
    received the delivery) is clamped to it: a clock ahead of ours must not inflate a score.
    """
    moment: datetime | None = None
    if isinstance(raw, bool):
        moment = None
    elif isinstance(raw, int | float):
        moment = datetime.fromtimestamp(raw, UTC)
    elif isinstance(raw, str) and raw:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            moment = None
    if moment is None:
        return fallback
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(moment.astimezone(UTC), fallback)


def bound_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata small enough to store with every event: strings cut, lists shortened, size capped.

    Never the body of a post or comment: metadata says what the activity was about (repository,
    number, title, link), so a 5 MB comment still yields a small event.
    """
    bounded: dict[str, Any] = {}
    size = 2  # the braces
    for key, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, str):
            value = value[:METADATA_MAX_STRING]
        elif isinstance(value, list):
            value = [v[:METADATA_MAX_STRING] if isinstance(v, str) else v for v in value[:METADATA_MAX_LIST]]
        elif not isinstance(value, int | float | bool):
            value = str(value)[:METADATA_MAX_STRING]
        entry = len(json.dumps({key: value}, default=str))  # '{"key": value}': 2 more than its share
        if size + entry > METADATA_MAX_BYTES:
            break
        bounded[key] = value
        size += entry
    return bounded
