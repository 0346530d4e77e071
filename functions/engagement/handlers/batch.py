"""Deliveries that carry many items (POST /events, Bevy): each item stored or answered on its own."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from engagement.domain.activity import Activity, Ignored
from engagement.domain.taxonomy import Taxonomy
from engagement.handlers.ingest import Dependencies
from engagement.observability import logger, metrics


def record_item(
    outcome: Activity | Ignored, raw: bytes, deps: Dependencies, received_at: datetime, taxonomy: Taxonomy
) -> dict[str, Any]:
    """Store one item's activity (or note an ignored item's account) and say what happened to it."""
    if isinstance(outcome, Ignored):
        result: dict[str, Any] = {"status": "ignored", "code": outcome.code, "reason": outcome.reason}
        if outcome.account:
            home = deps.store.resolve(outcome.account, received_at, taxonomy.identity)
            member_id = deps.store.refresh(home, received_at, taxonomy, epsilon=taxonomy.recalc_epsilon).member_id
            result["member_id"] = member_id
        metrics.add_metric(name="DeliveriesIgnored", unit=MetricUnit.Count, value=1)
        return result
    recorded = deps.store.record(outcome, raw, "application/json", received_at, taxonomy)
    if recorded.status == "duplicate":
        metrics.add_metric(name="DuplicateDeliveries", unit=MetricUnit.Count, value=1)
        return {"status": "duplicate", "event_id": recorded.event_id, "reason": "this event was stored before"}
    metrics.add_metric(name="ActivitiesStored", unit=MetricUnit.Count, value=1)
    logger.info("activity stored", extra={"event_id": recorded.event_id, "member_id": recorded.member_id})
    return {
        "status": "stored",
        "event_id": recorded.event_id,
        "member_id": recorded.member_id,
        "action": outcome.action,
        "score": round(recorded.score or 0.0, 4),
        "tier": recorded.tier,
    }


def summary(results: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"stored": 0, "duplicate": 0, "ignored": 0, "rejected": 0}
    for result in results:
        counts[result["status"]] += 1
    return counts
