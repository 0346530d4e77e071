"""Exactly-once CRM sync, the pure part: what is due for a member given what the CRM last took.

The sync state of a member and CRM records the `version` the CRM last took and the tier it
showed then. A change is due only when its version is newer, so a redelivered stream batch costs
nothing and an older image can never overwrite a newer one. A tier entry is measured against the
tier the CRM last showed (not only the stream's old image), so a promotion whose record failed is
still announced when a later version lands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engagement.domain.crm import MemberChange, Skipped, _entered, change_from_images
from engagement.domain.taxonomy import Taxonomy

RECENT_DAYS = 90
REASON_LIMIT = 3


@dataclass(frozen=True)
class SyncState:
    """What one CRM last took for one member."""

    version: int = -1
    tier: str | None = None
    record_id: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> SyncState:
        if not item:
            return cls()
        return cls(
            version=int(item.get("synced_version", -1)),
            tier=str(item["synced_tier"]) if item.get("synced_tier") else None,
            record_id=str(item["record_id"]) if item.get("record_id") else None,
        )


def due(change: MemberChange, state: SyncState, taxonomy: Taxonomy) -> MemberChange | None:
    """The change to send, measured against the CRM's state; None when the CRM already has this version or newer."""
    if change.version <= state.version:
        return None
    if state.version < 0:
        return change
    entered = _entered(state.tier, change.tier, taxonomy)
    return replace(change, previous_tier=state.tier, entered_task_tier=entered)


def change_from_member(item: dict[str, Any], taxonomy: Taxonomy) -> MemberChange | Skipped | None:
    """A member's current state as a change (for reconcile and replay, which read the table, not the stream)."""
    return change_from_images(None, item, taxonomy)


def strongest_actions(
    events: Iterable[dict[str, Any]], taxonomy: Taxonomy, now: datetime, limit: int = REASON_LIMIT
) -> tuple[str, ...]:
    """The member's strongest recent actions, for people reading a task or alert.

    Each action of the last `RECENT_DAYS` days counts with its decayed points now (points halve every
    half-life); actions are summed per kind, strongest first: `answer a forum question ×4 (31 pts)`.
    Withdrawn events (`withdrawn_at`) and zero-point actions count for nothing.
    """
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for event in events:
        if event.get("withdrawn_at"):
            continue
        action = str(event.get("action") or "")
        try:
            occurred = datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        age = (now - occurred).total_seconds()
        if age > RECENT_DAYS * 86400 or action not in taxonomy.actions:
            continue
        spec = taxonomy.actions[action]
        points = float(event.get("points", spec.points))
        if points <= 0:
            continue
        weight = points * 0.5 ** (max(age, 0.0) / spec.half_life_seconds)
        totals[action] = totals.get(action, 0.0) + weight
        counts[action] = counts.get(action, 0) + 1
    ranked = sorted(totals, key=lambda a: (-totals[a], a))[:limit]
    return tuple(f"{taxonomy.actions[a].label or a} ×{counts[a]} ({totals[a]:.0f} pts)" for a in ranked)
