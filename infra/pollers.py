"""The scheduled pollers (issue 3): one function, token secret, schedule and alarms per enabled platform.

Pollers are opt-in per stage (`-c pollers=discord,circle,meetup`), because a deployed poller whose token is
still the generated placeholder would fail every run and keep its Errors alarm ringing. What each reads is
configuration too: `-c discord_channels=<id>,<id>` and `-c meetup_groups=<urlname>,...`; Circle reads the whole
community its token belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from engagement import poller_settings, tables
from infra.grants import grant_store_events
from infra.stages import StageConfig


@dataclass(frozen=True)
class PollerSpec:
    platform: str
    construct_id: str
    handler: str
    secret_id: str
    secret_var: str
    what: str
    schedule: str


# Discord: a channel's messages every 15 minutes keeps each run small (Discord allows a bot about 50 requests per
# second). Circle and Meetup hourly: Circle counts every request against a monthly allowance (5,000 on Business),
# and Meetup events change slowly.
POLLERS = {
    "discord": PollerSpec(
        "discord",
        "DiscordPollerFunction",
        "engagement.handlers.discord_poller.lambda_handler",
        "DiscordBotToken",
        poller_settings.DISCORD_BOT_TOKEN,
        "Discord bot token",
        "rate(15 minutes)",
    ),
    "circle": PollerSpec(
        "circle",
        "CirclePollerFunction",
        "engagement.handlers.circle_poller.lambda_handler",
        "CircleApiToken",
        poller_settings.CIRCLE_API_TOKEN,
        "Circle Admin API v2 token",
        "rate(1 hour)",
    ),
    "meetup": PollerSpec(
        "meetup",
        "MeetupPollerFunction",
        "engagement.handlers.meetup_poller.lambda_handler",
        "MeetupToken",
        poller_settings.MEETUP_TOKEN,
        "Meetup OAuth access token",
        "rate(1 hour)",
    ),
}
# A run stops 20 s before its deadline (engagement.adapters.polling); 5 minutes is ample for 50 pages plus waits.
POLLER_TIMEOUT = Duration.minutes(5)
POLLER_MEMORY_MB = 512  # RSS ~50 MB like the other functions; memory buys CPU for JSON parsing
POLLER_MAX_PAGES = 50

# make(construct_id, handler, timeout, memory_mb, environment) -> the stack's EngagementFunction
FunctionFactory = Callable[[str, str, Duration, int, dict[str, str]], object]


class Pollers(Construct):
    """A poller function per enabled platform, with its token secret, EventBridge schedule and grants."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        make_function: FunctionFactory,
        table_env: dict[str, str],
        table_arns: Callable[..., list[str]],
        config_env: dict[str, str],
        config_parameter_arn: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, lambda_.IFunction] = {}
        self.secrets: dict[str, secretsmanager.Secret] = {}
        self.rules: dict[str, events.Rule] = {}
        targets_env = {
            "discord": {poller_settings.DISCORD_CHANNEL_IDS: ",".join(config.discord_channels)},
            "meetup": {poller_settings.MEETUP_GROUP_URLNAMES: ",".join(config.meetup_groups)},
        }
        for platform in config.pollers:
            spec = POLLERS[platform]
            secret = self._secret(spec, removal_policy)
            poller = make_function(
                spec.construct_id,
                spec.handler,
                POLLER_TIMEOUT,
                POLLER_MEMORY_MB,
                {
                    **table_env,
                    **config_env,
                    spec.secret_var + "_ARN": secret.secret_arn,
                    poller_settings.POLL_MAX_PAGES: str(POLLER_MAX_PAGES),
                    **targets_env.get(platform, {}),
                },
            )
            # The same writes as a webhook, plus its cursors: read, and put conditionally on their version.
            grant_store_events(poller, lambda spec: table_arns(spec)[0])
            poller.allow(  # type: ignore[attr-defined]
                "ReadPutCursors", ["dynamodb:GetItem", "dynamodb:PutItem"], table_arns(tables.CURSORS)
            )
            poller.allow("ReadPlatformToken", ["secretsmanager:GetSecretValue"], [secret.secret_arn])  # type: ignore[attr-defined]
            poller.allow("ReadConfigOverrides", ["ssm:GetParameter"], [config_parameter_arn])  # type: ignore[attr-defined]
            function: lambda_.Function = poller.function  # type: ignore[attr-defined]
            # A failed run is not retried by Lambda: the next scheduled run resumes from the same cursor anyway.
            function.configure_async_invoke(retry_attempts=0, max_event_age=Duration.hours(1))
            self.rules[platform] = events.Rule(
                self,
                f"{spec.platform.capitalize()}PollSchedule",
                description=f"Poll {spec.platform} for new community activity",
                schedule=events.Schedule.expression(spec.schedule),
                targets=[targets.LambdaFunction(function, retry_attempts=0)],
            )
            self.functions[platform] = function
            self.secrets[platform] = secret

    def _secret(self, spec: PollerSpec, removal_policy: RemovalPolicy) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            spec.secret_id,
            description=f"{spec.what} for the engagement {spec.platform} poller (a placeholder until set)",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=40),
            removal_policy=removal_policy,
        )
        Validations.of(secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason=f"The {spec.what} is issued by {spec.platform}: a new value must be created there and stored "
                "here together (docs/pollers.md), so a rotation Lambda changing it alone would break every poll.",
            )
        )
        return secret
