"""POST /webhooks/discourse: verify, map and store one Discourse delivery.

Discourse sends the same JSON body whether the hook is set to JSON or form encoding (only the
header differs), and a new `X-Discourse-Event-Id` on every retry, so the idempotency key comes
from the content (forum, event, object id), never from that header.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.domain import discourse
from engagement.handlers import ingest
from engagement.observability import logger, metrics
from engagement.settings import DISCOURSE_WEBHOOK_SECRET


def _classify(request: Any, payload: dict[str, Any], taxonomy: Any, received_at: Any, store: Any) -> Any:
    event_name = request.header("X-Discourse-Event") or ""
    instance = request.header("X-Discourse-Instance")
    if event_name != "ping" and instance is None:
        raise ingest.BadRequest("missing_header", "the X-Discourse-Instance header is missing")
    return discourse.classify(event_name, instance or "", payload, taxonomy, received_at, store.topic_owner)


PLATFORM = ingest.Platform(
    name=discourse.PLATFORM,
    secret_name=DISCOURSE_WEBHOOK_SECRET,
    signature_header="X-Discourse-Event-Signature",
    required_headers=("X-Discourse-Event",),
    delivery_header="X-Discourse-Event-Id",
    classify=_classify,
    decode=lambda media_type, body: json.loads(body),
)
_deps: ingest.Dependencies | None = None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _deps
    _deps = _deps or ingest.default_dependencies()
    return ingest.handle(PLATFORM, event, _deps)
