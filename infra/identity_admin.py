"""The identity admin API (issue 5): `/admin/{proxy+}` on the stack's REST API, proxied to one function.

Callers are the CRM or an internal tool, which send `Authorization: Bearer <token>`; the function compares the
token in constant time before any route runs and answers a missing or wrong one 401 (so API Gateway does not
require the header itself: a refusal reads the same whichever side made it). The token is a generated secret
(`AdminApiTokenSecretArn`) an operator reads or replaces.

The role is the widest of the stack because the admin API can erase a person: it may delete from every table
that holds personal data, but only append to the audit table (PutItem, conditional on a new entry id) and read it.
Every action below is one the code makes (tests/infra/test_iam_covers_calls.py drives each route against a real
endpoint and checks every call against this role).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import Acknowledgment, CfnOutput, Duration, RemovalPolicy, Validations
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from engagement import settings, tables
from infra.monitoring import any_count_alarm

HANDLER = "engagement.handlers.identity_admin.lambda_handler"
FUNCTION_ID = "IdentityAdminFunction"
TOKEN_SECRET_ID = "AdminApiToken"
PATH = "admin"
# API Gateway gives a REST integration 29 seconds. A merge or unmerge is a constant dozen DynamoDB requests
# whatever the members' event counts (bench/identity_merge.py); forgetting deletes one item per event, raw body
# and identity, a few thousand per person at most.
TIMEOUT = Duration.seconds(29)
MEMORY_MB = 512
# Operators and a CRM integration, not platforms: a handful of requests a second is plenty.
THROTTLE = (5, 10)  # requests per second, burst
METHOD_OPTIONS_KEY = f"/{PATH}/{{proxy+}}/*"  # every method of /admin/{proxy+}
URL_OUTPUT = "AdminApiUrl"
TOKEN_SECRET_ARN_OUTPUT = "AdminApiTokenSecretArn"


def _arn_var(name: str) -> str:
    return name + settings.SECRET_ARN_SUFFIX


class IdentityAdmin(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: Any,  # infra.stack.Tables
        make_function: Callable[[Any, dict[str, str]], Any],  # (FunctionSpec, env) -> EngagementFunction
        function_spec: Callable[..., Any],  # infra.stack.FunctionSpec
        crm_env: dict[str, str],  # the CRM sync's: provider and its settings (forget clears the CRM first)
        crm_secrets: list[str],  # ARNs of the CRM credentials the adapter reads (Salesforce adds its own)
        config_parameter_arn: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.token = secretsmanager.Secret(
            self,
            TOKEN_SECRET_ID,
            description="Bearer token of the engagement identity admin API (/admin/...)",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=48),
            removal_policy=removal_policy,
        )
        Validations.of(self.token).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="The admin token is configured in the calling CRM or internal tool as well: a new value must "
                "be set there and here together (docs/identity.md), so a rotation Lambda changing it alone would "
                "lock the caller out.",
            )
        )
        environment = {
            **{spec.env_var: data[spec].table_name for spec in tables.ALL_TABLES},
            **crm_env,
            _arn_var(settings.ADMIN_API_TOKEN): self.token.secret_arn,
        }
        self.function = make_function(function_spec(FUNCTION_ID, HANDLER, TIMEOUT, MEMORY_MB), environment)
        arn = {spec: data[spec].table_arn for spec in tables.ALL_TABLES}
        events_indexes = [f"{arn[tables.EVENTS]}/index/{index.name}" for index in tables.EVENTS.indexes]
        allow = self.function.allow
        # show, merge, unmerge, link, unlink: members and their parts, read in batches, written in transactions;
        # suggestions scan members and identities; forget deletes the person's members.
        allow(
            "ReadWriteMembers",
            [
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:Scan",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:ConditionCheckItem",
                "dynamodb:DeleteItem",
            ],
            [arn[tables.MEMBERS]],
        )
        allow(
            "ReadWriteIdentities",
            ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            [arn[tables.IDENTITIES]],
        )
        # Events of an account (link, unlink, unmerge) and of a member (forget); forget deletes them.
        allow("FindEvents", ["dynamodb:Query"], events_indexes)
        allow("DeleteEvents", ["dynamodb:DeleteItem"], [arn[tables.EVENTS]])
        # forget: raw bodies, outcomes and sync state are keyed by event or member id, queried then deleted.
        allow(
            "ForgetPersonalData",
            ["dynamodb:Query", "dynamodb:DeleteItem"],
            [arn[tables.RAW], arn[tables.OUTCOMES], arn[tables.SYNC]],
        )
        allow("AppendReadAudit", ["dynamodb:PutItem", "dynamodb:Query"], [arn[tables.AUDIT]])
        allow("ReadSecrets", ["secretsmanager:GetSecretValue"], [self.token.secret_arn, *crm_secrets])
        allow("ReadConfigOverrides", ["ssm:GetParameter"], [config_parameter_arn])

    def add_route(self, api: apigateway.RestApi) -> None:
        """ANY /admin/{proxy+}: the function routes, and answers an unknown route or method 404 itself."""
        api.root.add_resource(PATH).add_proxy(
            default_integration=apigateway.LambdaIntegration(self.function.function), any_method=True
        )

    def add_alarms(self, topic: sns.ITopic) -> None:
        five = Duration.minutes(5)
        for name, metric, description in (
            (
                "IdentityAdminErrors",
                self.function.function.metric_errors(period=five, statistic="Sum"),
                "The identity admin function failed at least once in 5 minutes (see its log group).",
            ),
            (
                "IdentityAdminThrottles",
                self.function.function.metric_throttles(period=five, statistic="Sum"),
                "The identity admin function was throttled in 5 minutes.",
            ),
        ):
            any_count_alarm(self, name, metric, description, topic)

    def add_outputs(self, scope: Construct, api: apigateway.RestApi) -> None:
        CfnOutput(scope, URL_OUTPUT, value=api.url_for_path(f"/{PATH}"))
        CfnOutput(scope, TOKEN_SECRET_ARN_OUTPUT, value=self.token.secret_arn)
