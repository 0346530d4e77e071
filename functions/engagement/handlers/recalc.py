"""Scheduled recalculation: every member's score and tier brought to now, without reading events.

Only members whose tier changes or whose score moves by more than the taxonomy's
`recalc_epsilon` are written, so a quiet community costs reads and almost no writes, and the
CRM hears only about real movement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.adapters.config_source import current_taxonomy
from engagement.adapters.dynamo import Store
from engagement.domain import scoring
from engagement.handlers import ingest
from engagement.observability import logger, metrics


@dataclass
class RecalcSummary:
    as_of: str
    scanned: int = 0
    written: int = 0
    tier_changes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def recalculate(store: Store, as_of: datetime) -> RecalcSummary:
    """Refresh every member at `as_of`, writing only meaningful changes."""
    taxonomy = current_taxonomy()
    summary = RecalcSummary(as_of=as_of.isoformat())
    for member in store.scan_members():
        if member.get("merged_into"):
            continue  # scored through the member it was merged into
        summary.scanned += 1
        refreshed = store.refresh(
            str(member["member_id"]), as_of, taxonomy, member=member, epsilon=taxonomy.recalc_epsilon
        )
        if refreshed.written:
            summary.written += 1
            summary.tier_changes += refreshed.tier != member.get("tier")
    return summary


def _apply_identity_rules(store: Store) -> None:
    """Merge the identity suggestions an operator allowed to merge automatically (`identity.auto_merge_rules`)."""
    taxonomy = current_taxonomy()
    if not taxonomy.identity.auto_merge_rules:
        return
    from engagement.adapters.identity_store import IdentityStore

    merged = IdentityStore(store).apply_suggestions(taxonomy.identity, scoring.utc_now(), taxonomy)
    logger.info("identity suggestions merged", extra={"merged": len(merged)})
    metrics.add_metric(name="AutomaticMerges", unit="Count", value=len(merged))


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Always "now", not the event's scheduled `time`: a replayed or sample event from the past must
    # not rewind scores to a moment before events that have since been stored.
    deps = ingest.default_dependencies()
    summary = recalculate(deps.store, scoring.utc_now())
    _apply_identity_rules(deps.store)
    logger.info("recalculated", extra={**summary.as_dict(), "scheduled_time": (event or {}).get("time")})
    metrics.add_metric(name="ScoresRecalculated", unit="Count", value=summary.written)
    return summary.as_dict()
