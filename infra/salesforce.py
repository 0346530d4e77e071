"""Salesforce as the CRM (`-c crm_provider=salesforce`): its credentials secret, the CRM sync's settings, and the
scheduled pull of outcomes with its own least-privilege role, schedule and alarms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from engagement import settings, tables
from infra.monitoring import any_count_alarm
from infra.stages import StageConfig

SECRET_ID = "SalesforceCredentials"
PULL_FUNCTION_ID = "SalesforcePullFunction"
PULL_HANDLER = "engagement.handlers.salesforce_pull.lambda_handler"
PULL_SCHEDULE_ID = "SalesforcePullSchedule"
SECRET_ARN_OUTPUT = "SalesforceCredentialsSecretArn"
# Stream records per CRM sync invocation: one sObject Collection holds 200 records, so a full batch is one upsert
# call (HubSpot's batch limit of 100 sets the default). 200 upserts plus their tasks fit the 2-minute timeout.
SYNC_BATCH_SIZE = 200
PULL_MEMORY_MB = 256  # waiting on Salesforce, not CPU; RSS is that of the other functions (~50 MB)
# Two SOQL queries of a few pages each, plus DynamoDB writes in batches of 25; 5 minutes bounds a first run's
# 30 days of changes in a large org.
PULL_TIMEOUT = Duration.minutes(5)
# The placeholder is valid JSON of the right shape, so a function reading it fails on Salesforce's refusal of
# the client id, not on parsing; the operator replaces all three values (docs/deploy.md).
SECRET_TEMPLATE = '{"login_url": "https://example.my.salesforce.com", "client_id": "replace-me"}'


def salesforce_env(config: StageConfig) -> dict[str, str]:
    """The SALESFORCE_* settings both functions read, from the stage's context."""
    env = {
        settings.SALESFORCE_API_VERSION: config.salesforce_api_version,
        settings.SALESFORCE_OBJECT: config.salesforce_object,
    }
    if config.salesforce_duplicate_rule_header:
        env[settings.SALESFORCE_DUPLICATE_RULE_HEADER] = config.salesforce_duplicate_rule_header
    return env


class SalesforceCrm(Construct):
    """The credentials secret, granted to the CRM sync, and the scheduled pull function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        data: Any,  # infra.stack.Tables
        crm_sync: Any,  # infra.stack.EngagementFunction
        make_function: Callable[..., Any],  # builds an EngagementFunction from a FunctionSpec and environment
        function_spec: Callable[..., Any],
        config_parameter_arn: str,
        config_env: dict[str, str],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            SECRET_ID,
            description="Salesforce client-credentials app (JSON: login_url, client_id, client_secret) for the "
            "engagement stack (placeholder until an operator sets the real values)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=SECRET_TEMPLATE,
                generate_string_key="client_secret",
                exclude_punctuation=True,
                password_length=40,
            ),
            removal_policy=removal_policy,
        )
        Validations.of(self.secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="The Salesforce consumer secret is issued by Salesforce: a new one is made in the org's "
                "external client app and set here together (docs/deploy.md), so a rotation Lambda changing it "
                "alone would break every CRM call.",
            )
        )
        self.env = salesforce_env(config)
        sf_env = self.env
        secret_var = settings.SALESFORCE_CREDENTIALS + settings.SECRET_ARN_SUFFIX
        self.connect(crm_sync)

        members, identities, outcomes, sync = (
            data[spec] for spec in (tables.MEMBERS, tables.IDENTITIES, tables.OUTCOMES, tables.SYNC)
        )
        self.pull = make_function(
            function_spec(PULL_FUNCTION_ID, PULL_HANDLER, PULL_TIMEOUT, PULL_MEMORY_MB),
            {
                tables.MEMBERS.env_var: members.table_name,
                tables.IDENTITIES.env_var: identities.table_name,
                tables.OUTCOMES.env_var: outcomes.table_name,
                tables.SYNC.env_var: sync.table_name,
                **config_env,
                secret_var: self.secret.secret_arn,
                **sf_env,
            },
        )
        # Linking reads a member (by the external id) or an email identity; outcomes are conditional puts (newer
        # wins); the high-water mark is one sync-state item (member `#pull`), read and put by key.
        self.pull.allow("LinkMembers", ["dynamodb:GetItem"], [members.table_arn, identities.table_arn])
        self.pull.allow("StoreOutcomes", ["dynamodb:PutItem"], [outcomes.table_arn])
        self.pull.allow("PullCursor", ["dynamodb:GetItem", "dynamodb:PutItem"], [sync.table_arn])
        self.pull.allow("ReadSalesforceCredentials", ["secretsmanager:GetSecretValue"], [self.secret.secret_arn])
        self.pull.allow("ReadConfigOverrides", ["ssm:GetParameter"], [config_parameter_arn])
        self.schedule = events.Rule(
            self,
            PULL_SCHEDULE_ID,
            description="Pull changed Salesforce contacts and won opportunities into the outcomes table",
            schedule=events.Schedule.expression(config.salesforce_pull_schedule),
            # One run at a time is plenty; a failed run is retried twice by EventBridge, then the next one catches up.
            targets=[targets.LambdaFunction(self.pull.function, retry_attempts=2, max_event_age=Duration.hours(1))],
        )

    def connect(self, function: Any) -> None:
        """Let a function that builds the CRM adapter (the CRM sync; any reconcile or replay job) reach Salesforce:
        the credentials secret's ARN, the SALESFORCE_* settings, and read access to that one secret."""
        secret_var = settings.SALESFORCE_CREDENTIALS + settings.SECRET_ARN_SUFFIX
        for name, value in {secret_var: self.secret.secret_arn, **self.env}.items():
            function.function.add_environment(name, value)
        function.allow("ReadSalesforceCredentials", ["secretsmanager:GetSecretValue"], [self.secret.secret_arn])

    def alarms(self, topic: sns.ITopic, dashboard: cloudwatch.Dashboard, namespace: str) -> dict[str, cloudwatch.Alarm]:
        """Errors and throttles like every function (infra/monitoring.py), on the stack's one alarm topic."""
        function = self.pull.function
        five = Duration.minutes(5)
        found = {
            "SalesforcePullErrors": (
                function.metric_errors(period=five, statistic="Sum"),
                "The Salesforce pull failed at least once in 5 minutes (credentials, a missing custom field, or the "
                "org's API limit: see its log group).",
            ),
            "SalesforcePullThrottles": (
                function.metric_throttles(period=five, statistic="Sum"),
                "The Salesforce pull was throttled in 5 minutes.",
            ),
        }
        created = {
            construct_id: any_count_alarm(self, construct_id, metric, description, topic)
            for construct_id, (metric, description) in found.items()
        }
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Salesforce outcomes pulled",
                left=[
                    cloudwatch.Metric(
                        namespace=namespace,
                        metric_name=name,
                        dimensions_map={"service": "engagement"},
                        statistic="Sum",
                        period=Duration.hours(1),
                        label=label,
                    )
                    for name, label in (("CrmOutcomesPulled", "outcomes"), ("CrmOutcomesUnlinked", "unlinked"))
                ],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(title="Salesforce pull alarms", alarms=list(created.values()), width=12),
        )
        return created
