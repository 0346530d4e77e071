"""Scheduled pull of HubSpot outcomes: contacts and closed-won deals changed since the last run.

The webhook is the fast path; the pull catches what a webhook missed (an app without a subscription,
a delivery HubSpot gave up on). Search calls keep to HubSpot's 4 per second through the client's
search limiter; cursors (newest modification seen) live in the sync table.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.domain import scoring
from engagement.observability import logger, metrics


def pull(outcomes: Any, sync: Any) -> dict[str, Any]:
    summary = outcomes.pull(sync, scoring.utc_now())
    return summary.as_dict()


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from engagement.adapters.sync_state import SyncStore
    from engagement.handlers import hubspot_webhook
    from engagement.handlers.errors import NotConfigured

    deps = hubspot_webhook.default_dependencies()
    if deps.outcomes is None:
        raise NotConfigured("no HubSpot token is configured (HUBSPOT_TOKEN): nothing to pull from")
    sync = SyncStore(deps.settings, deps.outcomes.outcomes.client)
    result = pull(deps.outcomes, sync)
    logger.info("hubspot outcomes pulled", extra={**result, "scheduled_time": (event or {}).get("time")})
    metrics.add_metric(name="OutcomesStored", unit="Count", value=result["outcomes"])
    return result
