"""Which member changes the CRM hears about, and what it is told.

The member table's stream carries every write. Only materialized writes (a new `version`) or a
newly known email are news to the CRM; accumulator-only writes are not. Within one batch the
newest image of each member wins, so a burst of events costs one update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from engagement.domain.identity import MERGED_TIER
from engagement.domain.taxonomy import Taxonomy


@dataclass(frozen=True)
class MemberChange:
    member_id: str
    email: str
    name: str
    score: float
    tier: str
    previous_tier: str | None
    tier_changed_at: str | None
    last_activity_at: str | None
    version: int
    entered_task_tier: bool
    # Why the member earned a tier entry: its strongest recent actions, filled in by the sync before a task.
    reasons: tuple[str, ...] = ()

    def properties(self) -> dict[str, str]:
        """The CRM's custom contact properties for this change."""
        props = {
            "community_score": f"{self.score:.2f}",
            "community_tier": self.tier,
        }
        if self.tier_changed_at:
            props["community_tier_changed_at"] = crm_time(self.tier_changed_at)
        if self.last_activity_at:
            props["community_last_activity_at"] = crm_time(self.last_activity_at)
        return props

    def task_subject(self) -> str:
        return f"Community {self.tier}: {self.name} ({self.email})"

    def task_body(self) -> str:
        came_from = f" from {self.previous_tier}" if self.previous_tier and self.previous_tier != "none" else ""
        last = _readable(self.last_activity_at) if self.last_activity_at else "unknown"
        body = (
            f"{self.name} moved{came_from} into the {self.tier} community tier with a score of {self.score:.1f}. "
            f"Last community activity: {last}."
        )
        if self.reasons:
            body += " Strongest recent actions: " + "; ".join(self.reasons) + "."
        return body


# The CRM's community properties, cleared when a person is forgotten (right to be forgotten, issue 5).
COMMUNITY_PROPERTIES = (
    "community_score",
    "community_tier",
    "community_tier_changed_at",
    "community_last_activity_at",
)


@dataclass(frozen=True)
class Forgotten:
    """A person whose community data is being erased: the CRM keeps the contact but loses every community field.

    `member_ids` are all the member records that made up the person (a merged member has several: Salesforce
    knows each by its external id); `emails` every address the person was known by (HubSpot finds contacts by
    email). Adapters must never create a record for a Forgotten: only existing ones are cleared.
    """

    key: str  # the id results are reported under (the root member's id)
    member_ids: tuple[str, ...]
    emails: tuple[str, ...]


@dataclass(frozen=True)
class Skipped:
    member_id: str
    reason: str


def change_from_images(
    old: dict[str, Any] | None, new: dict[str, Any] | None, taxonomy: Taxonomy
) -> MemberChange | Skipped | None:
    """The CRM update a member write calls for; None when the write is no news to the CRM."""
    if not new or "tier" not in new:
        return None
    versioned = old is None or old.get("version") != new.get("version")
    email_new = (old or {}).get("email") != new.get("email")
    if not versioned and not email_new:
        return None
    member_id = str(new["member_id"])
    email = new.get("email")
    if new.get("merged_into") and new.get("crm_shared"):
        return Skipped(member_id, "merged into a member the CRM knows by the same address; that member is pushed")
    if not email:
        return Skipped(member_id, "member has no email address; not pushed to the CRM")
    if not int(new.get("events_total", new.get("event_count", 0))):
        return Skipped(member_id, "member has no activity yet; nothing to tell the CRM")
    previous = (old or {}).get("tier")
    entered = _entered(previous, str(new["tier"]), taxonomy)
    return MemberChange(
        member_id=member_id,
        email=str(email),
        name=str(new.get("display_name") or new.get("name") or email),
        score=float(new.get("score", 0)),
        tier=str(new["tier"]),
        previous_tier=str(previous) if previous else None,
        tier_changed_at=_str(new.get("tier_changed_at")),
        last_activity_at=_str(new.get("last_activity_at")),
        version=int(new.get("version", 0)),
        entered_task_tier=entered,
    )


def latest_per_member(changes: Iterable[MemberChange], taxonomy: Taxonomy) -> list[MemberChange]:
    """One change per member: its newest image, measured against the tier it had before the batch.

    A batch may hold several images of one member (Active, then Power User, then Power User with
    a higher score). The CRM last heard the tier before the first of them, so that is the previous
    tier, and a task is due when the newest tier is a task tier ranked above it.
    """
    first: dict[str, MemberChange] = {}
    last: dict[str, MemberChange] = {}
    for change in changes:
        if change.member_id not in first or change.version < first[change.member_id].version:
            first[change.member_id] = change
        if change.member_id not in last or change.version >= last[change.member_id].version:
            last[change.member_id] = change
    merged = []
    for member_id, newest in last.items():
        previous = first[member_id].previous_tier
        merged.append(
            replace(newest, previous_tier=previous, entered_task_tier=_entered(previous, newest.tier, taxonomy))
        )
    return merged


def _entered(previous: str | None, tier: str, taxonomy: Taxonomy) -> bool:
    if previous == MERGED_TIER:
        return False  # an unmerge gives a member back the tier it had; the task for reaching it was sent then
    return tier != previous and tier in taxonomy.task_tiers and taxonomy.tier_rank(tier) > taxonomy.tier_rank(previous)


def _as_utc(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def crm_time(value: str) -> str:
    """An ISO 8601 instant as CRMs take it: UTC with milliseconds and a `Z` (`2026-12-01T12:00:00.000Z`)."""
    moment = _as_utc(value)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else value


def _readable(value: str) -> str:
    """`2026-12-03 17:21 UTC` from an ISO 8601 instant, for people reading a CRM task."""
    moment = _as_utc(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else value


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None
