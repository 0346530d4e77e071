"""POST /webhooks/hubspot: verify HubSpot's v3 signature, then store the outcomes the events point at.

HubSpot's webhook events carry only ids (and one changed property), so the named contacts and deals
are read back in batch calls, linked to members by email, and written to the outcomes table. A
failure to reach HubSpot is answered 503 so HubSpot delivers the batch again (writes are newer-wins,
so a repeat is harmless); a refused request changes nothing.

The signed URI is the public URL HubSpot called: `HUBSPOT_WEBHOOK_URL` when set (needed behind a
custom domain or locally), else rebuilt from API Gateway's request context (domain name and path).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.adapters.secrets import get_secret
from engagement.domain import hubspot_inbound as domain
from engagement.handlers.errors import (
    BadRequest,
    NotConfigured,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    WebhookError,
)
from engagement.handlers.http import WebhookRequest, json_response
from engagement.observability import logger, metrics
from engagement.settings import HUBSPOT_CLIENT_SECRET, Settings


@dataclass
class WebhookDependencies:
    settings: Settings
    outcomes: Any  # adapters.hubspot_inbound.HubSpotOutcomes; None when no HubSpot token is configured
    secret: Callable[[str], str | None] = get_secret
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)


def default_dependencies() -> WebhookDependencies:
    from engagement.adapters.hubspot_inbound import HubSpotOutcomes
    from engagement.adapters.outcomes import OutcomeStore
    from engagement.handlers import crm_sync, ingest

    base = ingest.default_dependencies()
    settings = base.settings
    try:
        hubspot = crm_sync.crm_adapter(replace(settings, crm_provider="hubspot"))
    except NotConfigured:
        # Answered 500 after the signature check, so a misconfigured stack never looks like a bad sender.
        return WebhookDependencies(settings=settings, outcomes=None)
    outcomes = HubSpotOutcomes(
        hubspot,
        lambda email: base.store.member_for_key(f"email#{email}"),
        OutcomeStore(settings, base.store.client),
        settings.hubspot_plan_property,
    )
    return WebhookDependencies(settings=settings, outcomes=outcomes)


def request_uri(event: dict[str, Any], configured: str | None) -> str:
    """The URL HubSpot called, as it signed it."""
    query = event.get("rawQueryString")
    if query is None:
        params = event.get("queryStringParameters") or {}
        query = "&".join(f"{k}={v}" for k, v in params.items())
    if configured:
        base = configured
    else:
        context = event.get("requestContext") or {}
        path = event.get("rawPath") or context.get("path") or event.get("path") or ""
        base = f"https://{context.get('domainName', '')}{path}"
    return f"{base}?{query}" if query else base


def handle(event: dict[str, Any], deps: WebhookDependencies) -> dict[str, Any]:
    try:
        request = WebhookRequest.from_api_gateway(event)
        if len(request.body) > deps.settings.max_body_bytes:
            raise PayloadTooLarge("payload_too_large", f"the body exceeds {deps.settings.max_body_bytes} bytes")
        secret = deps.secret(HUBSPOT_CLIENT_SECRET)
        if not secret:
            raise NotConfigured("no HubSpot client secret is configured (HUBSPOT_CLIENT_SECRET)")
        method = event.get("httpMethod") or ((event.get("requestContext") or {}).get("http") or {}).get("method")
        try:
            domain.verify_v3(
                secret,
                method or "POST",
                request_uri(event, deps.settings.hubspot_webhook_url),
                request.body,
                request.header("X-HubSpot-Signature-v3"),
                request.header("X-HubSpot-Request-Timestamp"),
                deps.now_ms(),
            )
        except domain.SignatureError as error:
            logger.warning("hubspot signature refused", extra={"reason": str(error)})
            if error.malformed:
                raise BadRequest("malformed_signature_header", str(error)) from None
            raise Unauthorized("invalid_signature", "the request is not signed by HubSpot (signature v3)") from None
        if request.media_type != "application/json":
            raise UnsupportedMediaType("unsupported_media_type", "HubSpot webhooks are application/json")
        try:
            batch = domain.parse_events(json.loads(request.body))
        except (ValueError, domain.EventsError) as error:
            raise BadRequest("invalid_body", str(error)) from None
        if deps.outcomes is None:
            raise NotConfigured("no HubSpot token is configured (HUBSPOT_TOKEN): cannot read the objects")
    except WebhookError as error:
        metrics.add_metric(name="HubspotWebhookRefused", unit="Count", value=1)
        return json_response(error.status, {"status": "refused", "error": error.code, "message": error.message})
    except NotConfigured as error:
        logger.error("not configured", extra={"reason": str(error)})
        return json_response(500, {"status": "error", "error": "not_configured", "message": str(error)})

    try:
        summary = deps.outcomes.from_webhook(batch)
    except Exception as error:  # HubSpot unreachable or refusing our reads: HubSpot will deliver again
        logger.exception("hubspot read failed")
        return json_response(
            503, {"status": "error", "error": "crm_unavailable", "message": f"could not read from HubSpot: {error}"}
        )
    metrics.add_metric(name="OutcomesStored", unit="Count", value=summary.outcomes)
    return json_response(200, {"status": "stored", "ignored_events": batch.ignored, **summary.as_dict()})


_deps: WebhookDependencies | None = None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _deps
    _deps = _deps or default_dependencies()
    return handle(event, _deps)
