"""Scheduled Circle poller (EventBridge rule -> this function); the mechanism is engagement.adapters.polling."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.handlers import ingest, pollers
from engagement.observability import logger, metrics


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return pollers.run_scheduled("circle", event, context, ingest.default_dependencies())
