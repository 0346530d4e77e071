"""CRM sync beyond the stream (issue 4): sync state and outcomes access, the reconcile schedule, HubSpot's
inbound webhook and pull, Slack alerts, and their alarms.

Hooked into the stack after the CRM sync function exists: it widens that function's environment and grants
(sync state table, events by member for task reasons, the Slack webhook secret) and adds three functions:
- CrmReconcileFunction, hourly: pushes every member whose synced version is behind its version;
- HubspotWebhookFunction on POST /webhooks/hubspot (signature v3, checked by the function: HubSpot's
  signature header is not required at API Gateway so that a missing one gets the function's specific 401);
- HubspotPullFunction, every 15 minutes: contacts and closed-won deals changed since the last pull.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import Acknowledgment, CfnOutput, Duration, RemovalPolicy, Validations
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from engagement import settings, tables

RECONCILE_HANDLER = "engagement.handlers.crm_reconcile.lambda_handler"
HUBSPOT_WEBHOOK_HANDLER = "engagement.handlers.hubspot_webhook.lambda_handler"
HUBSPOT_PULL_HANDLER = "engagement.handlers.hubspot_pull.lambda_handler"
RECONCILE_FUNCTION_ID = "CrmReconcileFunction"
HUBSPOT_WEBHOOK_FUNCTION_ID = "HubspotWebhookFunction"
HUBSPOT_PULL_FUNCTION_ID = "HubspotPullFunction"
HUBSPOT_CLIENT_SECRET_ID = "HubspotClientSecret"
SLACK_WEBHOOK_SECRET_ID = "SlackWebhookUrl"
RECONCILE_SCHEDULE = "rate(1 hour)"
PULL_SCHEDULE = "rate(15 minutes)"
# A reconcile of 10,000 members is a scan plus 100 BatchGetItems and, after an outage, 100 upserts at HubSpot's
# 10 per second: well under a minute; 5 minutes (the stack's cap) covers a long outage's backlog with 429s, and
# whatever a run leaves is picked up by the next.
RECONCILE_TIMEOUT = Duration.minutes(5)
RECONCILE_MEMORY_MB = 512
# HubSpot gives a webhook 5 seconds; two batch reads and a few DynamoDB writes take well under one.
HUBSPOT_WEBHOOK_TIMEOUT = Duration.seconds(10)
HUBSPOT_WEBHOOK_MEMORY_MB = 512
PULL_TIMEOUT = Duration.minutes(5)
PULL_MEMORY_MB = 256
# Reconcile runs hourly: three hours without a successful run means it is not catching up.
RECONCILE_WINDOW_HOURS = 3
WEBHOOK_PATH = "hubspot"
HUBSPOT_WEBHOOK_URL_OUTPUT = "HubspotWebhookUrl"
HUBSPOT_CLIENT_SECRET_ARN_OUTPUT = "HubspotClientSecretArn"
SLACK_WEBHOOK_SECRET_ARN_OUTPUT = "SlackWebhookSecretArn"

SYNC_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
]


def _arn_var(name: str) -> str:
    return name + settings.SECRET_ARN_SUFFIX


class CrmIntegration(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        crm_provider: str,
        data: Any,  # infra.stack.Tables
        make_function: Callable[[Any, dict[str, str]], Any],  # (FunctionSpec, env) -> EngagementFunction
        function_spec: Callable[..., Any],  # infra.stack.FunctionSpec
        crm_sync: Any,  # EngagementFunction
        crm_env: dict[str, str],
        hubspot_token: secretsmanager.ISecret,
        config_parameter_arn: str,
        api: apigateway.RestApi,
        alarm_topic: sns.ITopic,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        members, events_table = data[tables.MEMBERS], data[tables.EVENTS]
        sync, outcomes, identities = data[tables.SYNC], data[tables.OUTCOMES], data[tables.IDENTITIES]
        self.slack = self._secret(SLACK_WEBHOOK_SECRET_ID, "Slack incoming webhook URL for tier alerts", removal_policy)
        events_indexes = [f"{events_table.table_arn}/index/{index.name}" for index in tables.EVENTS.indexes]
        sync_env = {
            tables.SYNC.env_var: sync.table_name,
            tables.EVENTS.env_var: events_table.table_name,
            _arn_var(settings.SLACK_WEBHOOK_URL): self.slack.secret_arn,
        }
        self._alarm_action = cw_actions.SnsAction(alarm_topic)

        # The stream's sync: sync state, task reasons, alerts.
        for name, value in sync_env.items():
            crm_sync.function.add_environment(name, value)
        self._grant_sync(crm_sync, sync.table_arn, members.table_arn, events_indexes)

        self.reconcile = make_function(
            function_spec(RECONCILE_FUNCTION_ID, RECONCILE_HANDLER, RECONCILE_TIMEOUT, RECONCILE_MEMORY_MB),
            {**crm_env, **sync_env},
        )
        self.reconcile.allow("ScanMembers", ["dynamodb:Scan"], [members.table_arn])  # reads: _grant_sync
        self._grant_sync(self.reconcile, sync.table_arn, members.table_arn, events_indexes)
        self.reconcile.allow("ReadConfigOverrides", ["ssm:GetParameter"], [config_parameter_arn])
        secrets = [self.slack.secret_arn] + ([hubspot_token.secret_arn] if crm_provider == "hubspot" else [])
        self.reconcile.allow("ReadCrmSecrets", ["secretsmanager:GetSecretValue"], secrets)
        events.Rule(
            self,
            "ReconcileSchedule",
            description="Push every member whose CRM copy is behind its version",
            schedule=events.Schedule.expression(RECONCILE_SCHEDULE),
            targets=[targets.LambdaFunction(self.reconcile.function)],
        )
        self._function_alarms("CrmReconcile", self.reconcile.function)
        self._missed_alarm(self.reconcile.function)

        self.webhook = self.pull = None
        if crm_provider != "hubspot":
            return
        self.client_secret = self._secret(
            HUBSPOT_CLIENT_SECRET_ID, "HubSpot app client secret (webhook signatures)", removal_policy
        )
        inbound_env = {
            tables.IDENTITIES.env_var: identities.table_name,
            tables.OUTCOMES.env_var: outcomes.table_name,
            settings.HUBSPOT_BASE_URL: settings.DEFAULT_HUBSPOT_BASE_URL,
            _arn_var(settings.HUBSPOT_TOKEN): hubspot_token.secret_arn,
        }
        self.webhook = make_function(
            function_spec(
                HUBSPOT_WEBHOOK_FUNCTION_ID, HUBSPOT_WEBHOOK_HANDLER, HUBSPOT_WEBHOOK_TIMEOUT, HUBSPOT_WEBHOOK_MEMORY_MB
            ),
            {
                **inbound_env,
                _arn_var(settings.HUBSPOT_CLIENT_SECRET): self.client_secret.secret_arn,
                settings.MAX_BODY_BYTES: str(settings.DEFAULT_MAX_BODY_BYTES),
            },
        )
        self.pull = make_function(
            function_spec(HUBSPOT_PULL_FUNCTION_ID, HUBSPOT_PULL_HANDLER, PULL_TIMEOUT, PULL_MEMORY_MB),
            {**inbound_env, tables.SYNC.env_var: sync.table_name},
        )
        for function in (self.webhook, self.pull):
            function.allow("LinkByEmail", ["dynamodb:GetItem"], [identities.table_arn])
            function.allow("StoreOutcomes", ["dynamodb:PutItem"], [outcomes.table_arn])
        self.webhook.allow(
            "ReadHubspotSecrets",
            ["secretsmanager:GetSecretValue"],
            [self.client_secret.secret_arn, hubspot_token.secret_arn],
        )
        self.pull.allow("ReadHubspotToken", ["secretsmanager:GetSecretValue"], [hubspot_token.secret_arn])
        self.pull.allow("PullCursors", ["dynamodb:GetItem", "dynamodb:PutItem"], [sync.table_arn])
        events.Rule(
            self,
            "PullSchedule",
            description="Pull HubSpot lifecycle stages and closed-won deals into the outcomes table",
            schedule=events.Schedule.expression(PULL_SCHEDULE),
            targets=[targets.LambdaFunction(self.pull.function)],
        )
        route = api.root.resource_for_path(f"/webhooks/{WEBHOOK_PATH}")
        route.add_method("POST", apigateway.LambdaIntegration(self.webhook.function))
        self._function_alarms("HubspotWebhook", self.webhook.function)
        self._function_alarms("HubspotPull", self.pull.function)
        CfnOutput(scope, HUBSPOT_WEBHOOK_URL_OUTPUT, value=api.url_for_path(f"/webhooks/{WEBHOOK_PATH}"))
        CfnOutput(scope, HUBSPOT_CLIENT_SECRET_ARN_OUTPUT, value=self.client_secret.secret_arn)
        CfnOutput(scope, SLACK_WEBHOOK_SECRET_ARN_OUTPUT, value=self.slack.secret_arn)

    def _grant_sync(self, function: Any, sync_arn: str, members_arn: str, events_indexes: list[str]) -> None:
        function.allow("SyncState", SYNC_ACTIONS, [sync_arn])
        # A task's reasons are the person's events: a merged member's parts (read in one batch), then the events
        # of each of their accounts (by-account) and any stored without one (by-member).
        function.allow("ReadPersonMembers", ["dynamodb:GetItem", "dynamodb:BatchGetItem"], [members_arn])
        function.allow("PersonEvents", ["dynamodb:Query"], events_indexes)
        function.allow("ReadSlackWebhook", ["secretsmanager:GetSecretValue"], [self.slack.secret_arn])

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
                reason=f"The {what} is issued by a third party (HubSpot or Slack): a new value must be set there and "
                "here together (docs/deploy.md), so a rotation Lambda changing it alone would break the integration.",
            )
        )
        return secret

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, description: str, **kwargs: Any) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=kwargs.pop("threshold", 1),
            comparison_operator=kwargs.pop(
                "comparison", cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
            ),
            evaluation_periods=kwargs.pop("evaluation_periods", 1),
            treat_missing_data=kwargs.pop("missing", cloudwatch.TreatMissingData.NOT_BREACHING),
            alarm_description=description,
        )
        alarm.add_alarm_action(self._alarm_action)

    def _function_alarms(self, name: str, function: Any) -> None:
        five = Duration.minutes(5)
        self._alarm(
            f"{name}Errors",
            function.metric_errors(period=five, statistic="Sum"),
            f"The {name} function failed at least once in 5 minutes (see its log group).",
        )
        self._alarm(
            f"{name}Throttles",
            function.metric_throttles(period=five, statistic="Sum"),
            f"The {name} function was throttled in 5 minutes.",
        )

    def _missed_alarm(self, function: Any) -> None:
        hour = Duration.hours(1)
        self._alarm(
            "CrmReconcileMissed",
            cloudwatch.MathExpression(
                expression="invocations - FILL(errors, 0)",
                using_metrics={
                    "invocations": function.metric_invocations(period=hour, statistic="Sum"),
                    "errors": function.metric_errors(period=hour, statistic="Sum"),
                },
                period=hour,
                label="Successful reconciles",
            ),
            f"No successful CRM reconcile in the last {RECONCILE_WINDOW_HOURS} hours.",
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=RECONCILE_WINDOW_HOURS,
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
