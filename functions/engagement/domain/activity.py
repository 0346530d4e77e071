"""What a delivery becomes: an activity to score, or a reason to ignore it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

METADATA_MAX_BYTES = 4_096
METADATA_MAX_STRING = 256
METADATA_MAX_LIST = 20
NOREPLY_SUFFIX = "@users.noreply.github.com"


@dataclass(frozen=True)
class Account:
    """One person's account on one platform."""

    platform: str
    user_id: str
    handle: str | None = None
    email: str | None = None

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


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


class NormalizedEvent(BaseModel):
    """The one schema every accepted delivery becomes, as stored in the events table."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(min_length=1, max_length=512)
    member_id: str
    action: str
    platform: str
    account: str
    handle: str | None = None
    signal: str
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    points: float
    half_life_seconds: int = Field(gt=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


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
    for key, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, str):
            value = value[:METADATA_MAX_STRING]
        elif isinstance(value, list):
            value = [v[:METADATA_MAX_STRING] if isinstance(v, str) else v for v in value[:METADATA_MAX_LIST]]
        elif not isinstance(value, int | float | bool):
            value = str(value)[:METADATA_MAX_STRING]
        candidate = {**bounded, key: value}
        if len(json.dumps(candidate, default=str)) > METADATA_MAX_BYTES:
            break
        bounded = candidate
    return bounded
