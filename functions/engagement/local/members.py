"""Members as people read them: one row per member with identities, score and tier."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from engagement.adapters.dynamo import as_plain


def member_row(item: dict[str, Any]) -> dict[str, Any]:
    handles = item.get("handles") or {}
    identities = []
    for account in sorted(item.get("accounts") or []):
        platform, _, user_id = str(account).partition(":")
        identities.append({"platform": platform, "user_id": user_id, "handle": handles.get(account)})
    return {
        "member_id": item["member_id"],
        "name": item.get("display_name") or item.get("name"),
        "email": item.get("email"),
        "emails": as_plain(item.get("emails") or set()),
        "identities": identities,
        "score": round(float(item.get("score", 0)), 2),
        "tier": item.get("tier"),
        "tier_changed_at": item.get("tier_changed_at"),
        "last_activity_at": item.get("last_activity_at"),
        "score_at": item.get("score_at"),
        "events": int(item.get("events_total", item.get("event_count", 0))),
        "merged_members": sorted(item.get("parts") or {}),
    }


def sorted_rows(items: Iterable[dict[str, Any]], tier: str | None = None) -> list[dict[str, Any]]:
    """One row per person: a merged member's accounts and emails appear on the member it was merged into."""
    items = list(items)
    by_id = {str(item["member_id"]): item for item in items}
    rows = []
    for item in items:
        if item.get("merged_into"):
            continue
        parts = [by_id[p] for p in sorted(item.get("parts") or {}) if p in by_id]
        if parts:
            item = dict(item)
            item["accounts"] = set(item.get("accounts") or set()).union(*(p.get("accounts") or set() for p in parts))
            item["handles"] = {
                **{k: v for p in parts for k, v in (p.get("handles") or {}).items()},
                **(item.get("handles") or {}),
            }
            item["emails"] = set(item.get("emails") or set()).union(*(p.get("emails") or set() for p in parts))
        rows.append(member_row(item))
    if tier:
        rows = [row for row in rows if (row["tier"] or "").lower() == tier.lower()]
    return sorted(rows, key=lambda row: (-row["score"], row["name"] or ""))


def identity_text(row: dict[str, Any]) -> str:
    return ", ".join(f"{i['platform']}:{i['handle'] or i['user_id']}" for i in row["identities"])


def as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, default=str)


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    fields = [
        "member_id",
        "name",
        "email",
        "identities",
        "score",
        "tier",
        "tier_changed_at",
        "last_activity_at",
        "events",
    ]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "identities": identity_text(row)})
    return out.getvalue()


def as_table(rows: list[dict[str, Any]], title: str = "Members") -> Any:
    from rich.table import Table

    table = Table(title=title)
    columns = [
        ("Member", "left"),
        ("Identities", "left"),
        ("Email", "left"),
        ("Score", "right"),
        ("Tier", "left"),
        ("Events", "right"),
        ("Last activity", "left"),
        ("Scored at", "left"),
    ]
    for column, justify in columns:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row["name"] or row["member_id"][:8],
            identity_text(row),
            row["email"] or "-",
            f"{row['score']:.1f}",
            row["tier"] or "-",
            str(row["events"]),
            (row["last_activity_at"] or "-")[:10],
            (row["score_at"] or "-")[:16].replace("T", " "),
        )
    return table
