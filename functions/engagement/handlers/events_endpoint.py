"""POST /events: a signed batch of up to 100 normalized events from a named source.

The source names itself in `X-Event-Source` (`[a-z0-9][a-z0-9-]{0,31}`) and signs the request
the Standard Webhooks way with its own secret (`webhook-id`, `webhook-timestamp`,
`webhook-signature`). The secrets live in one secret, a JSON object of source name to
`whsec_...` value (EVENTS_SOURCE_SECRETS), so adding a source is one edit and no deploy.
Every item is answered on its own (stored, duplicate, ignored or rejected with its reason);
the request as a whole is refused only when it is unsigned, stale, unreadable or too large.
The contract is docs/events-api.yaml.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.domain import generic_events
from engagement.domain.activity import Ignored
from engagement.domain.signature_schemes import SignatureRejected, check_standard_webhooks
from engagement.handlers import batch, ingest
from engagement.handlers.errors import BadRequest, NotConfigured, Unauthorized, WebhookError
from engagement.handlers.http import WebhookRequest, json_response
from engagement.observability import logger, metrics
from engagement.settings import EVENTS_SOURCE_SECRETS

SOURCE_HEADER = "X-Event-Source"


class TooManyEvents(WebhookError):
    status = 413


def source_secrets(raw: str) -> dict[str, str]:
    """The configured `{source: whsec_...}` map.

    Raises:
        NotConfigured: the secret is not a JSON object of strings (our fault: answered 500).
    """
    try:
        secrets = json.loads(raw)
    except ValueError:
        raise NotConfigured(f"{EVENTS_SOURCE_SECRETS} is not JSON") from None
    if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
        raise NotConfigured(f"{EVENTS_SOURCE_SECRETS} must be a JSON object of source name to secret")
    return secrets


def verify(request: WebhookRequest, secrets_json: str, now: datetime) -> None:
    source = request.header(SOURCE_HEADER)
    if source is None:
        raise BadRequest("missing_header", f"the {SOURCE_HEADER} header is missing")
    if not generic_events.valid_source(source):
        raise BadRequest("bad_source", f"{SOURCE_HEADER} must match {generic_events.SOURCE_PATTERN.pattern}")
    secret = source_secrets(secrets_json).get(source)
    if not secret:
        raise Unauthorized("unknown_source", f"no secret is configured for source {source!r}")
    headers = {name: request.header(name) for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    try:
        check_standard_webhooks(secret, headers, request.body, now)
    except SignatureRejected as error:
        raise Unauthorized(error.code, error.message) from None
    except ValueError as error:  # the configured secret is not whsec_ + base64
        raise NotConfigured(f"the secret of source {source!r}: {error}") from None


def process(request: WebhookRequest, payload: dict[str, Any], deps: ingest.Dependencies) -> dict[str, Any]:
    source = request.header(SOURCE_HEADER) or ""
    try:
        items = generic_events.items_of(payload)
    except generic_events.BatchError as error:
        cls = TooManyEvents if error.code == "too_many_events" else BadRequest
        raise cls(error.code, error.message) from None
    received_at = deps.clock()
    taxonomy = deps.taxonomy()
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        outcome = generic_events.classify(source, item, taxonomy, received_at)
        if isinstance(outcome, generic_events.Rejected):
            results.append({"index": index, "id": item_id, "status": "rejected", "reason": outcome.reason})
            continue
        raw = json.dumps(item, sort_keys=True).encode()
        results.append({"index": index, "id": item_id, **batch.record_item(outcome, raw, deps, received_at, taxonomy)})
    counts = batch.summary(results)
    logger.info("events batch", extra={"source": source, **counts})
    return json_response(200, {"source": source, "received": len(items), **counts, "results": results})


PLATFORM = ingest.Platform(
    name=generic_events.PLATFORM,
    secret_name=EVENTS_SOURCE_SECRETS,
    signature_header="webhook-signature",
    required_headers=(),
    delivery_header="webhook-id",
    classify=lambda request, payload, taxonomy, received_at, store: Ignored("unused", "process handles batches"),
    media_types=(ingest.JSON,),
    verify=verify,
    process=process,
)
_deps: ingest.Dependencies | None = None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _deps
    _deps = _deps or ingest.default_dependencies()
    return ingest.handle(PLATFORM, event, _deps)
