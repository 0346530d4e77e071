"""POST /webhooks/bevy: attendee check-ins from Bevy become attendance activities.

Bevy authenticates a delivery by sending the shared secret itself in `X-BEVY-SECRET` (as the
public discourse-bevy-plugin receiver expects); it is compared in constant time. That proves who
sent the request but not that the body is unaltered or fresh, so every check-in is keyed by
(event, person) and a replay can never count twice. See engagement.domain.bevy for the format.
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.domain import bevy
from engagement.domain.activity import Ignored, PayloadShapeError
from engagement.handlers import batch, ingest
from engagement.handlers.errors import BadRequest, Unauthorized
from engagement.handlers.http import WebhookRequest, json_response
from engagement.observability import logger, metrics
from engagement.settings import BEVY_WEBHOOK_SECRET

SECRET_HEADER = "X-BEVY-SECRET"


def verify(request: WebhookRequest, secret: str, now: datetime) -> None:
    sent = (request.header(SECRET_HEADER) or "").encode("utf-8")
    if not hmac.compare_digest(sent, secret.encode("utf-8")):
        raise Unauthorized("bad_signature", f"the {SECRET_HEADER} header does not match the configured secret")


def process(request: WebhookRequest, payload: dict[str, Any], deps: ingest.Dependencies) -> dict[str, Any]:
    received_at = deps.clock()
    taxonomy = deps.taxonomy()
    try:
        outcomes = bevy.classify(payload["groups"], taxonomy, received_at)
    except PayloadShapeError as error:
        raise BadRequest("unexpected_shape", str(error)) from None
    results = []
    for index, (entry, outcome) in enumerate(outcomes):
        raw = json.dumps(entry).encode()
        results.append({"index": index, **batch.record_item(outcome, raw, deps, received_at, taxonomy)})
    logger.info("bevy delivery", extra=batch.summary(results))
    return json_response(200, {"status": "processed", **batch.summary(results), "results": results})


PLATFORM = ingest.Platform(
    name=bevy.PLATFORM,
    secret_name=BEVY_WEBHOOK_SECRET,
    signature_header=SECRET_HEADER,
    required_headers=(),
    delivery_header="X-Request-Id",
    classify=lambda request, payload, taxonomy, received_at, store: Ignored("unused", "process handles Bevy"),
    media_types=(ingest.JSON,),
    decode=lambda media_type, body: {"groups": json.loads(body)},
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
