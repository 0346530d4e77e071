"""POST /webhooks/discord: Discord interactions and Webhook Events, verified with Ed25519.

Discord checks an endpoint before saving it: it sends a PING and a request with a wrong
signature, and expects PONG for the first and 401 for the second. Both kinds of PING are
answered here as Discord requires (`{"type": 1}` for interactions, 204 for webhook events).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.domain import discord
from engagement.domain.signature_schemes import SignatureRejected, check_ed25519
from engagement.handlers import ingest
from engagement.handlers.errors import Unauthorized
from engagement.handlers.http import WebhookRequest, json_response
from engagement.observability import logger, metrics
from engagement.settings import DISCORD_PUBLIC_KEY


def verify(request: WebhookRequest, public_key: str, now: datetime) -> None:
    try:
        check_ed25519(
            public_key,
            request.header("X-Signature-Timestamp"),
            request.header("X-Signature-Ed25519"),
            request.body,
            now,
        )
    except SignatureRejected as error:
        raise Unauthorized(error.code, error.message) from None


def no_content() -> dict[str, Any]:
    return {"statusCode": 204, "headers": {}, "body": "", "isBase64Encoded": False}


def preflight(request: WebhookRequest, payload: dict[str, Any]) -> dict[str, Any] | None:
    kind = discord.kind(payload)
    if kind == discord.INTERACTION_PING:
        return json_response(200, {"type": discord.PONG})
    if kind == discord.WEBHOOK_PING:
        return no_content()
    return None


def shape(payload: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Discord wants 204 for webhook events and an interaction response for interactions; our reason goes to logs."""
    if discord.kind(payload) == discord.WEBHOOK_EVENT:
        return no_content()
    return json_response(200, discord.interaction_reply(payload))


PLATFORM = ingest.Platform(
    name=discord.PLATFORM,
    secret_name=DISCORD_PUBLIC_KEY,
    signature_header="X-Signature-Ed25519",
    required_headers=(),
    delivery_header="X-Signature-Timestamp",
    classify=lambda request, payload, taxonomy, received_at, store: discord.classify(payload, received_at),
    media_types=(ingest.JSON,),
    verify=verify,
    preflight=preflight,
    shape=shape,
)
_deps: ingest.Dependencies | None = None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _deps
    _deps = _deps or ingest.default_dependencies()
    return ingest.handle(PLATFORM, event, _deps)
