"""Slack, Discord and Bevy webhook functions and the generic `POST /events` endpoint (issue 3).

Each is a platform a stage enables in its `platforms` list (`-c platforms=github,discourse,slack,discord,bevy,
events`; infra/stages.py). Slack, Discord and Bevy join the existing `/webhooks/<platform>` routes of the
WebhookApi (with its per-route throttle, required signature header and alarms); `events` gets its own route,
`POST /events`. Every function runs on the shared code asset and layer with its own role, log group and
secret(s): secrets are created with a generated placeholder an operator replaces (docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_cdk import Acknowledgment, CfnOutput, Duration, RemovalPolicy, Validations
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from engagement import settings, tables
from infra.grants import grant_store_events

SLACK, DISCORD, BEVY, EVENTS = "slack", "discord", "bevy", "events"
PLATFORMS = (SLACK, DISCORD, BEVY, EVENTS)
# Routed under /webhooks/<platform> by WebhookApi; `events` is POST /events, added here.
WEBHOOK_PLATFORMS = (SLACK, DISCORD, BEVY)
EVENTS_PATH = "events"

SIGNATURE_HEADERS = {SLACK: "X-Slack-Signature", DISCORD: "X-Signature-Ed25519", BEVY: "X-BEVY-SECRET"}
# Slack sends up to 30,000 events per workspace per hour (about 8/s); Discord and Bevy far fewer.
ROUTE_THROTTLE = {SLACK: (30, 60), DISCORD: (10, 20), BEVY: (10, 20)}
# Slack and Discord wait 3 s for an answer; a stored delivery takes tens of ms, the users.info lookup at most 1.5 s.
WEBHOOK_TIMEOUT = Duration.seconds(10)
# A batch of 100 events is up to 100 transactional writes: seconds, not minutes.
EVENTS_TIMEOUT = Duration.seconds(30)
MEMORY_MB = 512  # as the other webhooks: CPU for the cold import, RSS ~50 MB


@dataclass(frozen=True)
class Spec:
    construct_id: str
    handler: str
    timeout: Duration
    secrets: tuple[tuple[str, str, str], ...]  # (construct id, env var, description)
    updates_events: bool = False  # Slack's message_deleted marks an event withdrawn


SPECS = {
    SLACK: Spec(
        "SlackWebhookFunction",
        "engagement.handlers.slack_webhook.lambda_handler",
        WEBHOOK_TIMEOUT,
        (
            ("SlackSigningSecret", settings.SLACK_SIGNING_SECRET, "Slack app signing secret"),
            ("SlackBotToken", settings.SLACK_BOT_TOKEN, "Slack bot token (xoxb-, optional: emails from users.info)"),
        ),
        updates_events=True,
    ),
    DISCORD: Spec(
        "DiscordWebhookFunction",
        "engagement.handlers.discord_webhook.lambda_handler",
        WEBHOOK_TIMEOUT,
        (("DiscordPublicKey", settings.DISCORD_PUBLIC_KEY, "Discord application public key (hex)"),),
    ),
    BEVY: Spec(
        "BevyWebhookFunction",
        "engagement.handlers.bevy_webhook.lambda_handler",
        WEBHOOK_TIMEOUT,
        (("BevyWebhookSecret", settings.BEVY_WEBHOOK_SECRET, "Bevy webhook secret"),),
    ),
    EVENTS: Spec(
        "EventsFunction",
        "engagement.handlers.events_endpoint.lambda_handler",
        EVENTS_TIMEOUT,
        (("EventsSourceSecrets", settings.EVENTS_SOURCE_SECRETS, "POST /events source secrets (JSON object)"),),
    ),
}
OUTPUT_NAMES = {SLACK: "SlackWebhookUrl", DISCORD: "DiscordWebhookUrl", BEVY: "BevyWebhookUrl", EVENTS: "EventsUrl"}


class CommunityWebhooks(Construct):
    """The functions and secrets of the enabled community platforms; routes are added by the stack's API."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platforms: tuple[str, ...],
        make_function: Callable[[Any, dict[str, str]], Any],
        function_spec: Callable[..., Any],
        tables_by_spec: Callable[[tables.TableSpec], Any],
        environment: dict[str, str],
        config_parameter_arn: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, lambda_.IFunction] = {}
        self.secrets: dict[str, secretsmanager.Secret] = {}
        for platform in (p for p in PLATFORMS if p in platforms):
            spec = SPECS[platform]
            secrets = [self._secret(cid, what, removal_policy) for cid, _, what in spec.secrets]
            env = {
                **environment,
                **{
                    var + settings.SECRET_ARN_SUFFIX: s.secret_arn
                    for (_, var, _), s in zip(spec.secrets, secrets, strict=True)
                },
            }
            function = make_function(function_spec(spec.construct_id, spec.handler, spec.timeout, MEMORY_MB), env)
            # Withdrawal (Slack's message_deleted) sets withdrawn_at on the event, in the transaction that
            # subtracts its points.
            grant_store_events(function, lambda table: tables_by_spec(table).table_arn, withdraws=spec.updates_events)
            function.allow("ReadSigningSecret", ["secretsmanager:GetSecretValue"], [s.secret_arn for s in secrets])
            function.allow("ReadConfigOverrides", ["ssm:GetParameter"], [config_parameter_arn])
            self.functions[platform] = function.function
            for (cid, _, _), secret in zip(spec.secrets, secrets, strict=True):
                self.secrets[cid] = secret

    @property
    def webhook_functions(self) -> dict[str, lambda_.IFunction]:
        """The functions routed under /webhooks/<platform> by the stack's WebhookApi."""
        return {p: f for p, f in self.functions.items() if p in WEBHOOK_PLATFORMS}

    def add_events_route(self, api: apigateway.RestApi) -> None:
        """POST /events, proxied to the events function, when that platform is enabled."""
        function = self.functions.get(EVENTS)
        if function is None:
            return
        api.root.add_resource(EVENTS_PATH).add_method("POST", apigateway.LambdaIntegration(function))

    def add_outputs(self, scope: Construct, api: apigateway.RestApi) -> None:
        for platform in self.functions:
            path = f"/{EVENTS_PATH}" if platform == EVENTS else f"/webhooks/{platform}"
            CfnOutput(scope, OUTPUT_NAMES[platform], value=api.url_for_path(path))
        for construct_id, secret in self.secrets.items():
            CfnOutput(scope, f"{construct_id}Arn", value=secret.secret_arn)

    def _secret(self, construct_id: str, what: str, removal_policy: RemovalPolicy) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            construct_id,
            description=f"{what} for the engagement stack (placeholder until an operator sets the real value)",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=40),
            removal_policy=removal_policy,
        )
        Validations.of(secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason=f"The {what} is issued by or shared with a third party (the platform or the sending source): "
                "a new value must be set there and here together (docs/deploy.md), so a rotation Lambda changing it "
                "alone would break every delivery.",
            )
        )
        return secret
