"""The engagement stack: tables, secrets, config, functions, webhook API, schedule and CRM stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from aws_cdk import BundlingOptions, CfnOutput, DockerImage, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from engagement import settings, tables
from engagement.tables import TableSpec
from infra import constants
from infra.bundling import PipLayerBundler

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64


# TableSpec uses DynamoDB's own type codes.
ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(name: str, type_code: str = "S") -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=ATTRIBUTE_TYPES[type_code])


class Tables(Construct):
    """The four tables of engagement.tables, built from their specs."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.by_spec = {spec.logical_id: self._table(spec, removal_policy) for spec in tables.ALL_TABLES}

    def __getitem__(self, spec: TableSpec) -> dynamodb.Table:
        return self.by_spec[spec.logical_id]

    def _table(self, spec: TableSpec, removal_policy: RemovalPolicy) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            spec.logical_id,
            partition_key=_attribute(spec.partition_key),
            sort_key=_attribute(spec.sort_key, spec.sort_key_type) if spec.sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            stream=dynamodb.StreamViewType(spec.stream) if spec.stream else None,
            time_to_live_attribute=spec.ttl_attribute,
            removal_policy=removal_policy,
        )
        for index in spec.indexes:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_attribute(index.partition_key),
                sort_key=_attribute(index.sort_key) if index.sort_key else None,
                projection_type=dynamodb.ProjectionType.ALL,
            )
        # Stateful: pin the logical id to the spec so moving the construct never replaces a table.
        cast(dynamodb.CfnTable, table.node.default_child).override_logical_id(spec.logical_id)
        return table


class Secrets(Construct):
    """Webhook signing secrets and the CRM token: created with a generated placeholder, filled by an operator."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.github = self._secret(constants.GITHUB_SECRET_ID, "GitHub webhook secret", removal_policy)
        self.discourse = self._secret(constants.DISCOURSE_SECRET_ID, "Discourse webhook secret", removal_policy)
        self.hubspot = self._secret(constants.HUBSPOT_SECRET_ID, "HubSpot private app token", removal_policy)

    def _secret(self, construct_id: str, what: str, removal_policy: RemovalPolicy) -> secretsmanager.Secret:
        return secretsmanager.Secret(
            self,
            construct_id,
            description=f"{what} for the engagement stack (placeholder until an operator sets the real value)",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=40),
            removal_policy=removal_policy,
        )


class LambdaAssets(Construct):
    """One code asset shared by every function, and one layer with the third-party dependencies."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        functions_dir = str(constants.FUNCTIONS_DIR)
        self.code = lambda_.Code.from_asset(functions_dir, exclude=constants.CODE_EXCLUDE)
        self.layer = lambda_.LayerVersion(
            self,
            constants.DEPENDENCIES_LAYER_ID,
            description="Third-party dependencies of the engagement functions (functions/requirements.txt)",
            code=lambda_.Code.from_asset(
                functions_dir,
                exclude=constants.LAYER_SOURCE_EXCLUDE,
                bundling=BundlingOptions(
                    image=DockerImage.from_registry(constants.LAYER_BUILD_IMAGE),
                    local=PipLayerBundler(),
                ),
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )


@dataclass(frozen=True)
class FunctionSpec:
    construct_id: str
    handler: str
    timeout: Duration
    memory_size: int = 512


class EngagementFunction(Construct):
    """A Python 3.13 arm64 function on the shared code and layer, with its own log group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        assets: LambdaAssets,
        environment: dict[str, str],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=removal_policy)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=assets.code,
            layers=[assets.layer],
            handler=spec.handler,
            timeout=spec.timeout,
            memory_size=spec.memory_size,
            environment={
                "POWERTOOLS_SERVICE_NAME": constants.SERVICE_NAME,
                "POWERTOOLS_LOG_LEVEL": constants.LOG_LEVEL,
                **environment,
            },
            log_group=log_group,
        )


class WebhookApi(Construct):
    """REST API: POST /webhooks/github and POST /webhooks/discourse, proxied to their functions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        github: lambda_.IFunction,
        discourse: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.api = apigateway.RestApi(
            self,
            "Api",
            rest_api_name=f"engagement-webhooks-{stage}",
            description="Webhook receivers for the engagement stack",
            # Callers are platform servers: an edge-optimized (CloudFront) endpoint buys nothing.
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            cloud_watch_role=False,
            deploy_options=apigateway.StageOptions(
                stage_name=stage,
                throttling_rate_limit=constants.API_THROTTLE_RATE,
                throttling_burst_limit=constants.API_THROTTLE_BURST,
                metrics_enabled=True,
            ),
        )
        # The stack outputs ApiUrl itself; drop RestApi's auto-named duplicate (WebhookApiEndpoint...).
        self.api.node.try_remove_child("Endpoint")

        webhooks = self.api.root.add_resource(constants.WEBHOOKS_PATH)
        webhooks.add_resource(constants.GITHUB_PATH).add_method("POST", apigateway.LambdaIntegration(github))
        webhooks.add_resource(constants.DISCOURSE_PATH).add_method("POST", apigateway.LambdaIntegration(discourse))


class RecalcSchedule(Construct):
    """EventBridge rule that runs the score recalculation on a schedule."""

    def __init__(self, scope: Construct, construct_id: str, *, expression: str, recalc: lambda_.IFunction) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description="Recalculate decayed engagement scores",
            schedule=events.Schedule.expression(expression),
            targets=[targets.LambdaFunction(recalc)],
        )


class CrmSyncStream(Construct):
    """Members table stream -> CRM sync function, with partial batch failures and an SQS failure destination."""

    def __init__(
        self, scope: Construct, construct_id: str, *, members: dynamodb.ITable, crm_sync: lambda_.IFunction
    ) -> None:
        super().__init__(scope, construct_id)
        self.failures = sqs.Queue(
            self,
            constants.CRM_SYNC_FAILURES_ID,
            enforce_ssl=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            retention_period=Duration.days(constants.CRM_SYNC_FAILURE_RETENTION_DAYS),
        )
        crm_sync.add_event_source(
            event_sources.DynamoEventSource(
                members,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=constants.CRM_SYNC_BATCH_SIZE,
                max_batching_window=Duration.seconds(constants.CRM_SYNC_BATCH_WINDOW_SECONDS),
                report_batch_item_failures=True,
                retry_attempts=constants.CRM_SYNC_RETRY_ATTEMPTS,
                bisect_batch_on_error=True,
                on_failure=event_sources.SqsDlq(self.failures),
            )
        )


def _table_env(data: Tables, *specs: TableSpec) -> dict[str, str]:
    return {spec.env_var: data[spec].table_name for spec in specs}


class EngagementStack(Stack):
    """Everything the engagement product needs in one account and region, for one stage."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: str, recalc_schedule: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Dev resources come and go with the stack; anything else keeps its data. (Full stages: a later issue.)
        removal_policy = RemovalPolicy.DESTROY if stage == constants.DEFAULT_STAGE else RemovalPolicy.RETAIN

        data = Tables(self, constants.TABLES_ID, removal_policy=removal_policy)
        secrets = Secrets(self, constants.SECRETS_ID, removal_policy=removal_policy)
        config = ssm.StringParameter(
            self,
            constants.CONFIG_PARAMETER_ID,
            parameter_name=constants.config_parameter_name(stage),
            string_value="{}",
            description="Engagement taxonomy overrides (JSON), merged over the bundled default",
        )
        assets = LambdaAssets(self, constants.LAMBDA_ASSETS_ID)

        def function(spec: FunctionSpec, environment: dict[str, str]) -> lambda_.Function:
            return EngagementFunction(
                self,
                spec.construct_id,
                spec=spec,
                assets=assets,
                environment=environment,
                removal_policy=removal_policy,
            ).function

        webhook_env = {
            **_table_env(data, *tables.ALL_TABLES),
            settings.CONFIG_PARAMETER: config.parameter_name,
            settings.MAX_BODY_BYTES: str(settings.DEFAULT_MAX_BODY_BYTES),
            settings.RAW_RETENTION_DAYS: str(settings.DEFAULT_RAW_RETENTION_DAYS),
        }
        github = function(
            FunctionSpec(constants.GITHUB_FUNCTION_ID, constants.GITHUB_HANDLER, Duration.seconds(15)),
            {**webhook_env, _arn_var(settings.GITHUB_WEBHOOK_SECRET): secrets.github.secret_arn},
        )
        discourse = function(
            FunctionSpec(constants.DISCOURSE_FUNCTION_ID, constants.DISCOURSE_HANDLER, Duration.seconds(15)),
            {**webhook_env, _arn_var(settings.DISCOURSE_WEBHOOK_SECRET): secrets.discourse.secret_arn},
        )
        recalc = function(
            FunctionSpec(constants.RECALC_FUNCTION_ID, constants.RECALC_HANDLER, Duration.minutes(5)),
            {**_table_env(data, tables.MEMBERS), settings.CONFIG_PARAMETER: config.parameter_name},
        )
        crm_sync = function(
            FunctionSpec(constants.CRM_SYNC_FUNCTION_ID, constants.CRM_SYNC_HANDLER, Duration.minutes(2)),
            {
                **_table_env(data, tables.MEMBERS),
                _arn_var(settings.HUBSPOT_TOKEN): secrets.hubspot.secret_arn,
                settings.CRM_PROVIDER: constants.CRM_PROVIDER,
                settings.HUBSPOT_BASE_URL: settings.DEFAULT_HUBSPOT_BASE_URL,
            },
        )

        for webhook, secret in ((github, secrets.github), (discourse, secrets.discourse)):
            for spec in tables.ALL_TABLES:
                data[spec].grant_read_write_data(webhook)
            secret.grant_read(webhook)
            config.grant_read(webhook)
        data[tables.MEMBERS].grant_read_write_data(recalc)
        config.grant_read(recalc)
        data[tables.MEMBERS].grant_read_data(crm_sync)
        secrets.hubspot.grant_read(crm_sync)

        api = WebhookApi(self, constants.API_ID, stage=stage, github=github, discourse=discourse).api
        RecalcSchedule(self, constants.RECALC_SCHEDULE_ID, expression=recalc_schedule, recalc=recalc)
        stream = CrmSyncStream(self, constants.CRM_SYNC_STREAM_ID, members=data[tables.MEMBERS], crm_sync=crm_sync)

        CfnOutput(self, constants.API_URL_OUTPUT, value=api.url)
        CfnOutput(self, constants.GITHUB_WEBHOOK_URL_OUTPUT, value=api.url_for_path(constants.GITHUB_WEBHOOK_PATH))
        CfnOutput(
            self, constants.DISCOURSE_WEBHOOK_URL_OUTPUT, value=api.url_for_path(constants.DISCOURSE_WEBHOOK_PATH)
        )
        CfnOutput(self, constants.CRM_SYNC_FAILURE_QUEUE_URL_OUTPUT, value=stream.failures.queue_url)
        CfnOutput(self, constants.GITHUB_SECRET_ARN_OUTPUT, value=secrets.github.secret_arn)
        CfnOutput(self, constants.DISCOURSE_SECRET_ARN_OUTPUT, value=secrets.discourse.secret_arn)
        CfnOutput(self, constants.HUBSPOT_SECRET_ARN_OUTPUT, value=secrets.hubspot.secret_arn)
        CfnOutput(self, constants.CONFIG_PARAMETER_OUTPUT, value=config.parameter_name)


def _arn_var(secret_var: str) -> str:
    """The env var holding a secret's ARN when deployed (the functions read the plain var locally)."""
    return secret_var + settings.SECRET_ARN_SUFFIX
