"""POST /webhooks/slack: verify, map and store one Slack Events API delivery.

Slack signs every request (signing secret, v0) including the `url_verification` handshake, which
is answered with its `challenge` once the signature checks out. Redeliveries
(`X-Slack-Retry-Num`) go through the same path and are answered 200 `duplicate`: any 2xx stops
Slack's retries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.domain import slack
from engagement.domain.activity import Account, Activity
from engagement.domain.signature_schemes import SignatureRejected, check_slack
from engagement.handlers import ingest
from engagement.handlers.errors import BadRequest, Unauthorized
from engagement.handlers.http import WebhookRequest, json_response
from engagement.observability import logger, metrics
from engagement.settings import SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET

DIRECTORY = "slack_directory"


def verify(request: WebhookRequest, secret: str, now: datetime) -> None:
    try:
        check_slack(
            secret, request.header("X-Slack-Request-Timestamp"), request.header("X-Slack-Signature"), request.body, now
        )
    except SignatureRejected as error:
        raise Unauthorized(error.code, error.message) from None


def preflight(request: WebhookRequest, payload: dict[str, Any]) -> dict[str, Any] | None:
    if payload.get("type") != "url_verification":
        return None
    challenge = payload.get("challenge")
    if not isinstance(challenge, str) or not challenge or len(challenge) > 256:
        raise BadRequest("unexpected_shape", "url_verification carries no challenge string")
    return json_response(200, {"challenge": challenge})


def with_email(activity: Activity, deps: ingest.Dependencies) -> Activity:
    """The activity's account with its email from users.info, when a bot token is configured."""
    directory = deps.clients.get(DIRECTORY)
    if directory is None:
        token = deps.secret(SLACK_BOT_TOKEN)
        # A bot token starts with xoxb-; anything else (the deployed secret's generated placeholder) is "not set".
        if not token or not token.startswith("xoxb-"):
            return activity
        from engagement.adapters.slack_directory import SlackDirectory  # deferred: httpx only when configured

        directory = deps.clients[DIRECTORY] = SlackDirectory(token)
    account = activity.account
    if account.email or deps.store.event_exists(activity.event_id):
        return activity  # a redelivery needs no lookup
    email = directory.email_of(account.user_id)
    if not email:
        return activity
    enriched = Account(account.platform, account.user_id, account.handle, email, account.display_name)
    return Activity(
        activity.event_id,
        activity.platform,
        activity.signal,
        activity.action,
        enriched,
        activity.occurred_at,
        activity.metadata,
        activity.registers_owner,
    )


PLATFORM = ingest.Platform(
    name=slack.PLATFORM,
    secret_name=SLACK_SIGNING_SECRET,
    signature_header="X-Slack-Signature",
    required_headers=(),
    delivery_header="X-Slack-Request-Timestamp",
    classify=lambda request, payload, taxonomy, received_at, store: slack.classify(payload, taxonomy, received_at),
    media_types=(ingest.JSON,),
    verify=verify,
    preflight=preflight,
    enrich=with_email,
)
_deps: ingest.Dependencies | None = None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _deps
    _deps = _deps or ingest.default_dependencies()
    return ingest.handle(PLATFORM, event, _deps)
