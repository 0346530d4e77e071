"""The webhook pipeline every platform shares: size, signature, content type, body, mapping, store.

Order matters: the size check runs before hashing, and the signature is checked before the body
is parsed, so an unauthenticated caller learns nothing about what we would accept.

Platforms differ in how they sign (GitHub and Discourse: HMAC of the body in one header; Slack:
HMAC of `v0:timestamp:body` with a replay window; Discord: Ed25519 over timestamp and body;
Standard Webhooks: HMAC of `id.timestamp.body`), so each `Platform` brings its own `verify`;
the default is the GitHub/Discourse scheme. Handshakes that must be answered in the platform's
own words (Slack's `url_verification`, Discord's PING) go through `preflight` after verification.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools.metrics import MetricUnit

from engagement.adapters.config_source import current_taxonomy
from engagement.adapters.dynamo import Store
from engagement.adapters.secrets import get_secret
from engagement.domain import scoring, signatures
from engagement.domain.activity import Activity, Ignored, PayloadShapeError, Withdrawal
from engagement.domain.taxonomy import Taxonomy
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
from engagement.settings import Settings

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# Event names and delivery ids are short; a longer value is not a real platform header.
MAX_HEADER_CHARS = 200

Classifier = Callable[[WebhookRequest, dict[str, Any], Taxonomy, datetime, Store], Activity | Ignored | Withdrawal]
# Checks a request's signature with the platform's secret at `now`; raises Unauthorized naming what is wrong.
Verifier = Callable[[WebhookRequest, str, datetime], None]
# Answers a verified handshake in the platform's own words (a Lambda proxy response), or None to go on.
Preflight = Callable[[WebhookRequest, dict[str, Any]], dict[str, Any] | None]
# Reshapes the pipeline's JSON answer where a platform requires its own (Discord: 204, interaction replies).
Shaper = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Platform:
    """How one platform signs, labels and shapes its deliveries."""

    name: str
    secret_name: str
    signature_header: str
    required_headers: tuple[str, ...]
    delivery_header: str
    classify: Classifier
    media_types: tuple[str, ...] = (JSON, FORM)
    decode: Callable[[str, bytes], Any] = field(default=lambda media_type, body: json.loads(body))
    verify: Verifier | None = None  # None: `sha256=<hex HMAC of the body>` in `signature_header`
    preflight: Preflight | None = None
    shape: Shaper | None = None
    # Completes an activity from a platform API before it is stored (Slack: the email from users.info).
    enrich: Callable[[Activity, Dependencies], Activity] | None = None
    # Replaces classify-and-store for deliveries of many items (POST /events, Bevy): gets the verified payload.
    process: Callable[[WebhookRequest, dict[str, Any], Dependencies], dict[str, Any]] | None = None


@dataclass
class Dependencies:
    """What the pipeline talks to; built once per cold start, replaced in tests."""

    settings: Settings
    store: Store
    taxonomy: Callable[[], Taxonomy] = current_taxonomy
    secret: Callable[[str], str | None] = get_secret
    clock: Callable[[], datetime] = scoring.utc_now
    # Platform API clients a classifier may consult (e.g. Slack's users.info), built lazily by name.
    clients: dict[str, Any] = field(default_factory=dict)


def default_dependencies() -> Dependencies:
    import boto3  # deferred so that importing a handler module stays cheap for local tools
    from botocore.config import Config

    settings = Settings.from_env()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # Throttling and transient 5xx from DynamoDB are retried with backoff before we give up with a 5xx.
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=5)
    return Dependencies(
        settings=settings, store=Store(settings, boto3.client("dynamodb", region_name=region, config=config))
    )


def set_platform_dimension(name: str) -> None:
    """The metrics' `platform` dimension, once per flush. Powertools keeps dimensions across a flush that had no
    metrics, so a local process serving several platforms (serve, demo) replaces the previous one itself."""
    if metrics.dimension_set.get("platform") != name:
        metrics.dimension_set.pop("platform", None)
        metrics.add_dimension(name="platform", value=name)


def handle(platform: Platform, event: dict[str, Any], deps: Dependencies) -> dict[str, Any]:
    """Answer one webhook delivery; bad input gets a 4xx naming what was wrong."""
    set_platform_dimension(platform.name)
    try:
        request = WebhookRequest.from_api_gateway(event)
        logger.append_keys(platform=platform.name, delivery=request.header(platform.delivery_header))
        return _accept(platform, request, deps)
    except WebhookError as error:
        logger.warning("delivery refused", extra={"status": error.status, "code": error.code, "reason": error.message})
        metrics.add_metric(name="DeliveriesRefused", unit=MetricUnit.Count, value=1)
        if isinstance(error, Unauthorized):
            metrics.add_metric(name="BadSignatures", unit=MetricUnit.Count, value=1)
        return json_response(error.status, {"status": "refused", "error": error.code, "message": error.message})
    except NotConfigured as error:
        logger.error("function not configured", extra={"reason": str(error)})
        return json_response(500, {"status": "error", "message": str(error)})


def _accept(platform: Platform, request: WebhookRequest, deps: Dependencies) -> dict[str, Any]:
    payload, media_type = verified_payload(platform, request, deps)
    if platform.preflight is not None:
        answer = platform.preflight(request, payload)
        if answer is not None:
            logger.info("handshake answered")
            return answer
    if platform.process is not None:
        response = platform.process(request, payload, deps)
    else:
        response = _classify_and_store(platform, request, payload, media_type, deps)
    return platform.shape(payload, response) if platform.shape is not None else response


def verify_signature(platform: Platform, request: WebhookRequest, deps: Dependencies) -> None:
    """Size first, then the signature over the raw bytes; raises a WebhookError naming what is wrong."""
    limit = deps.settings.max_body_bytes
    if len(request.body) > limit:
        raise PayloadTooLarge("too_large", f"the body is {len(request.body)} bytes; the limit is {limit}")

    signature = request.header(platform.signature_header)
    if signature is None:
        raise Unauthorized("missing_signature", f"the {platform.signature_header} header is missing")
    secret = deps.secret(platform.secret_name)
    if not secret:
        raise NotConfigured(f"the {platform.name} webhook secret is not configured ({platform.secret_name})")
    if platform.verify is not None:
        platform.verify(request, secret, deps.clock())
    elif not signatures.verify(signature, secret, request.body):
        raise Unauthorized("bad_signature", f"the {platform.signature_header} signature does not match the body")


def verified_payload(platform: Platform, request: WebhookRequest, deps: Dependencies) -> tuple[dict[str, Any], str]:
    """The decoded JSON object of a verified request, and its media type.

    Raises:
        WebhookError: too large, unsigned or wrongly signed, wrong content type, a missing or
            oversized header, an empty body, or a body that is not a JSON object.
        NotConfigured: the platform's secret is not set.
    """
    verify_signature(platform, request, deps)
    media_type = request.media_type
    if media_type not in platform.media_types:
        raise UnsupportedMediaType(
            "unsupported_media_type",
            f"content type {media_type or '(none)'!r} is not supported; send {' or '.join(platform.media_types)}",
        )
    for name in platform.required_headers:
        value = request.header(name)
        if value is None:
            raise BadRequest("missing_header", f"the {name} header is missing")
        if len(value) > MAX_HEADER_CHARS:
            raise BadRequest("bad_header", f"the {name} header is longer than {MAX_HEADER_CHARS} characters")
    if not request.body.strip():
        raise BadRequest("empty_body", "the body is empty")
    try:
        payload = platform.decode(media_type, request.body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("malformed_body", f"the body is not valid {media_type}: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest("malformed_body", "the body must be a JSON object")
    return payload, media_type


def _classify_and_store(
    platform: Platform, request: WebhookRequest, payload: dict[str, Any], media_type: str, deps: Dependencies
) -> dict[str, Any]:
    received_at = deps.clock()
    taxonomy = deps.taxonomy()
    try:
        outcome = platform.classify(request, payload, taxonomy, received_at, deps.store)
    except PayloadShapeError as error:
        raise BadRequest("unexpected_shape", str(error)) from None
    except (AttributeError, TypeError) as error:
        # A field of the wrong type (a string where an object belongs): the sender's payload, not our fault.
        logger.warning("payload shape", exc_info=True)
        raise BadRequest("unexpected_shape", f"the payload does not have the shape its event names: {error}") from None
    if isinstance(outcome, Ignored):
        return _ignored(platform, outcome, deps, received_at, taxonomy)
    if isinstance(outcome, Withdrawal):
        return _withdrawn(outcome, deps, received_at, taxonomy)

    if platform.enrich is not None:
        outcome = platform.enrich(outcome, deps)
    logger.append_keys(event_id=outcome.event_id, action=outcome.action)
    recorded = deps.store.record(outcome, request.body, media_type, received_at, taxonomy)
    if recorded.status == "duplicate":
        logger.info("duplicate delivery")
        metrics.add_metric(name="DuplicateDeliveries", unit=MetricUnit.Count, value=1)
        return json_response(
            200,
            {
                "status": "duplicate",
                "event_id": recorded.event_id,
                "message": "this event was stored before; nothing changed",
            },
        )
    logger.info("activity stored", extra={"member_id": recorded.member_id, "tier": recorded.tier})
    metrics.add_metric(name="ActivitiesStored", unit=MetricUnit.Count, value=1)
    return json_response(
        202,
        {
            "status": "stored",
            "event_id": recorded.event_id,
            "member_id": recorded.member_id,
            "action": outcome.action,
            "score": round(recorded.score or 0.0, 4),
            "tier": recorded.tier,
        },
    )


def _ignored(
    platform: Platform, outcome: Ignored, deps: Dependencies, received_at: datetime, taxonomy: Taxonomy
) -> dict[str, Any]:
    member_id = None
    if outcome.account:
        # An account learned from a delivery that scores nothing is still a member: a Lurker until it acts.
        home = deps.store.resolve(outcome.account, received_at, taxonomy.identity)
        member_id = deps.store.refresh(home, received_at, taxonomy, epsilon=taxonomy.recalc_epsilon).member_id
    logger.info("delivery ignored", extra={"code": outcome.code, "reason": outcome.reason, "member_id": member_id})
    metrics.add_metric(name="DeliveriesIgnored", unit=MetricUnit.Count, value=1)
    body: dict[str, Any] = {"status": "ignored", "code": outcome.code, "reason": outcome.reason}
    if member_id:
        body["member_id"] = member_id
    return json_response(200, body)


def _withdrawn(outcome: Withdrawal, deps: Dependencies, received_at: datetime, taxonomy: Taxonomy) -> dict[str, Any]:
    logger.append_keys(event_id=outcome.event_id)
    result = deps.store.withdraw(outcome, received_at, taxonomy)
    logger.info("event withdrawn", extra={"result": result.status, "member_id": result.member_id})
    metrics.add_metric(name="EventsWithdrawn", unit=MetricUnit.Count, value=1)
    body: dict[str, Any] = {"status": "withdrawn", "result": result.status, "event_id": result.event_id}
    if result.status == "withdrawn":
        body.update(
            member_id=result.member_id,
            points_withdrawn=result.points,
            score=round(result.score or 0.0, 4),
            tier=result.tier,
        )
    body["reason"] = outcome.reason
    return json_response(200, body)


def decode_json_or_form(media_type: str, body: bytes) -> Any:
    """JSON as sent, or GitHub's form encoding: the JSON document in the `payload` field."""
    if media_type == FORM:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        if "payload" not in fields:
            raise ValueError("the form has no payload field")
        return json.loads(fields["payload"][0])
    return json.loads(body)
