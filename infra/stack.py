"""The engagement stack: tables, secrets, config, functions, webhook API, schedule, CRM stream and monitoring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from aws_cdk import Acknowledgment, BundlingOptions, CfnOutput, DockerImage, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from engagement import settings, tables
from engagement.tables import TableSpec
from infra import constants
from infra.bundling import PipLayerBundler
from infra.community_webhooks import CommunityWebhooks
from infra.crm import CrmIntegration
from infra.grants import grant_store_events
from infra.identity_admin import METHOD_OPTIONS_KEY as ADMIN_METHOD_OPTIONS_KEY
from infra.identity_admin import THROTTLE as ADMIN_THROTTLE
from infra.identity_admin import IdentityAdmin
from infra.monitoring import Monitoring
from infra.pollers import Pollers
from infra.salesforce import SECRET_ARN_OUTPUT as SALESFORCE_SECRET_ARN_OUTPUT
from infra.salesforce import SYNC_BATCH_SIZE as SALESFORCE_SYNC_BATCH_SIZE
from infra.salesforce import SalesforceCrm
from infra.stages import StageConfig

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
    """The tables of engagement.tables, built from their specs."""

    def __init__(
        self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy, deletion_protection: bool
    ) -> None:
        super().__init__(scope, construct_id)
        self._deletion_protection = deletion_protection
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
            deletion_protection=self._deletion_protection,
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
                reason=f"The {what} is shared with a third party (the platform or HubSpot): a new value must be "
                "set there and here together (docs/deploy.md), so a rotation Lambda changing it alone would break "
                "every delivery or CRM call.",
            )
        )
        return secret


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
    memory_size: int
    reserved_concurrency: int | None = None


# Sizing. Measured on this project's machine (Python 3.11, x86_64; Lambda runs 3.13 on arm64, so treat these as
# estimates): peak RSS of a handler process after importing its module and creating its boto3 clients is 49-51 MB
# for every function; a whole `engagement invoke` of a sample event, which also runs an embedded DynamoDB (moto) in
# the same process, peaks at 110-112 MB, an upper bound. Cold import of a webhook handler: about 390 ms on one core
# (bench/packaging.py). Lambda gives CPU in proportion to memory (1,769 MB = one vCPU), so memory is sized for CPU,
# not for RSS: 512 MB keeps the webhooks' cold start well inside GitHub's 10 s delivery timeout.
WEBHOOK_MEMORY_MB = 512  # RSS ~50 MB measured; headroom buys CPU for the ~390 ms cold import
# GitHub gives up on a delivery after 10 s; a stored delivery takes a few DynamoDB round trips (tens of ms).
WEBHOOK_TIMEOUT = Duration.seconds(10)
RECALC_MEMORY_MB = 512  # RSS ~50 MB + one scan page (1 MB) at a time; CPU for the per-member decay arithmetic
# A scan of 10,000 members with conditional writes is a few seconds in DynamoDB; 5 minutes bounds a large community.
RECALC_TIMEOUT = Duration.minutes(5)
CRM_SYNC_MEMORY_MB = 256  # RSS ~51 MB; the work is waiting on HubSpot, not CPU
# A batch of 100 records is at most 100 contact upserts plus tasks, retried on 429 with backoff.
CRM_SYNC_TIMEOUT = Duration.minutes(2)

LOG_RETENTION = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
}


def log_retention(days: int) -> logs.RetentionDays:
    if days not in LOG_RETENTION:
        raise ValueError(f"log_retention_days must be one of {sorted(LOG_RETENTION)}, not {days}")
    return LOG_RETENTION[days]


class EngagementFunction(Construct):
    """A Python 3.13 arm64 function on the shared code and layer, with its own role, log group and tracing.

    The role starts empty (no AWSLambdaBasicExecutionRole, whose logs statement covers every log group): it may
    write to its own log group only, and every other permission is added by the stack, action by action.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        assets: LambdaAssets,
        environment: dict[str, str],
        removal_policy: RemovalPolicy,
        retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        log_group = logs.LogGroup(self, "Logs", retention=retention, removal_policy=removal_policy)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the engagement {construct_id}",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnLogGroup",
                # The log group's Arn attribute ends in `:*`, which covers its streams (named by Lambda).
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
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
            reserved_concurrent_executions=spec.reserved_concurrency,
            role=self.role,
            environment={
                "POWERTOOLS_SERVICE_NAME": constants.SERVICE_NAME,
                "POWERTOOLS_LOG_LEVEL": constants.LOG_LEVEL,
                **environment,
            },
            log_group=log_group,
            # Powertools Logger already writes JSON; JSON format makes Lambda's own platform lines JSON too.
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=lambda_.Tracing.ACTIVE,
        )
        Validations.of(self).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="Pinned to python3.13, the runtime this stack's dependency bundle is built and measured for "
                "(bench/packaging.py); moving to a newer runtime is a deliberate change with a fresh measurement.",
            )
        )
        Validations.of(self).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Active tracing adds xray:PutTraceSegments and xray:PutTelemetryRecords, which X-Ray only "
                "authorizes on Resource '*' (no resource-level permissions)"
                + (
                    "; the stream event source needs dynamodb:ListStreams, which likewise has no resource type."
                    if spec.construct_id == constants.CRM_SYNC_FUNCTION_ID
                    else "."
                ),
            )
        )

    def allow(self, sid: str, actions: list[str], resources: list[str]) -> None:
        self.role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))


class WebhookApi(Construct):
    """REST API: POST /webhooks/<platform> per enabled platform, proxied to its function.

    API Gateway refuses a request without the platform's signature header before any Lambda runs, answering 401
    with the same JSON body shape the functions use, so a platform sees one answer whichever side refused.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        functions: dict[str, lambda_.IFunction],
        removal_policy: RemovalPolicy,
        route_throttles: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention(config.log_retention_days), removal_policy=removal_policy
        )
        self.api = apigateway.RestApi(
            self,
            "Api",
            rest_api_name=f"engagement-webhooks-{config.name}",
            description="Webhook receivers for the engagement stack",
            # Callers are platform servers: an edge-optimized (CloudFront) endpoint buys nothing.
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # Execution and access logging need the account's API Gateway CloudWatch role (one per account and
            # region). Created here unless the operator says the account already has one.
            cloud_watch_role=config.api_gateway_cloudwatch_role,
            # Retained: other APIs in the account may rely on the account setting pointing at this role.
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN if config.api_gateway_cloudwatch_role else None,
            deploy_options=apigateway.StageOptions(
                stage_name=config.name,
                throttling_rate_limit=constants.API_THROTTLE_RATE,
                throttling_burst_limit=constants.API_THROTTLE_BURST,
                method_options={
                    f"/{constants.WEBHOOKS_PATH}/{platform}/POST": apigateway.MethodDeploymentOptions(
                        throttling_rate_limit=constants.ROUTE_THROTTLE[platform][0],
                        throttling_burst_limit=constants.ROUTE_THROTTLE[platform][1],
                    )
                    for platform in functions
                }
                | {
                    key: apigateway.MethodDeploymentOptions(throttling_rate_limit=rate, throttling_burst_limit=burst)
                    for key, (rate, burst) in (route_throttles or {}).items()
                },
                metrics_enabled=True,
                # Errors only, and never request or response bodies: deliveries carry personal data.
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                tracing_enabled=True,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        # The stack outputs ApiUrl itself; drop RestApi's auto-named duplicate (WebhookApiEndpoint...).
        self.api.node.try_remove_child("Endpoint")

        validator = self.api.add_request_validator(
            "SignatureHeaderValidator", validate_request_parameters=True, validate_request_body=False
        )
        webhooks = self.api.root.add_resource(constants.WEBHOOKS_PATH)
        for platform, function in functions.items():
            header = constants.SIGNATURE_HEADERS[platform]
            webhooks.add_resource(platform).add_method(
                "POST",
                apigateway.LambdaIntegration(function),
                request_parameters={f"method.request.header.{header}": True},
                request_validator=validator,
            )
        self.api.add_gateway_response(
            "MissingSignature",
            type=apigateway.ResponseType.BAD_REQUEST_PARAMETERS,
            status_code="401",
            templates={"application/json": _missing_signature_body(functions)},
        )

        self.web_acl = WebAcl(self, constants.WAF_ID, stage=self.api.deployment_stage) if config.waf else None
        if self.web_acl is None:
            Validations.of(self).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-APIG3",
                    reason="WAF is a per-stage option (context waf=true) since it costs per request and per rule; "
                    "without it every request still needs a valid HMAC signature and is throttled per route.",
                )
            )
        Validations.of(self).acknowledge(
            Acknowledgment(
                id="AwsSolutions-APIG2",
                reason="Request validation is on for parameters (the signature header is required). Bodies are "
                "not validated by API Gateway on purpose: the signature covers the raw bytes, bodies come as JSON "
                "or form-encoded, and the function answers a malformed one with a specific 400/413/415.",
            )
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            Validations.of(self).acknowledge(
                Acknowledgment(
                    id=rule,
                    reason="GitHub and Discourse cannot send AWS or Cognito credentials: each delivery is "
                    "authenticated by its HMAC-SHA256 signature over the raw body, required here and verified by "
                    "the function (an authorizer never sees the body, so it could not check it). The /admin "
                    "routes take a bearer token (a generated secret) that their function compares in constant "
                    "time before any route runs.",
                )
            )


def _missing_signature_body(functions: dict[str, lambda_.IFunction]) -> str:
    headers = " or ".join(constants.SIGNATURE_HEADERS[p] for p in functions)
    return (
        '{"status": "refused", "error": "missing_signature", '
        f'"message": "the platform\'s signature header ({headers}) is missing"}}'
    )


class WebAcl(Construct):
    """Optional regional WAF on the API stage: AWS's IP reputation list and a per-IP rate limit.

    No body-size rule: a regional web ACL inspects only the first 8 KB of a body (64 KB at most, at extra cost),
    and ordinary GitHub deliveries exceed 8 KB, so a size rule would block real traffic. The body limit is
    API Gateway's fixed 10 MB and the functions' MAX_BODY_BYTES (docs/deploy.md).
    """

    RATE_LIMIT_PER_5_MINUTES = 3000

    def __init__(self, scope: Construct, construct_id: str, *, stage: apigateway.Stage) -> None:
        super().__init__(scope, construct_id)
        metric_name = "EngagementWebhooks"
        self.acl = wafv2.CfnWebACL(
            self,
            "Acl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_waf_visibility(metric_name),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="AmazonIpReputationList",
                    priority=0,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesAmazonIpReputationList"
                        )
                    ),
                    visibility_config=_waf_visibility(f"{metric_name}IpReputation"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="RatePerIp",
                    priority=1,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=self.RATE_LIMIT_PER_5_MINUTES, aggregate_key_type="IP"
                        )
                    ),
                    visibility_config=_waf_visibility(f"{metric_name}RatePerIp"),
                ),
            ],
        )
        wafv2.CfnWebACLAssociation(self, "Association", resource_arn=stage.stage_arn, web_acl_arn=self.acl.attr_arn)


def _waf_visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )


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
        self,
        scope: Construct,
        construct_id: str,
        *,
        members: dynamodb.ITable,
        crm_sync: lambda_.IFunction,
        removal_policy: RemovalPolicy,
        batch_size: int = constants.CRM_SYNC_BATCH_SIZE,
    ) -> None:
        super().__init__(scope, construct_id)
        self.failures = sqs.Queue(
            self,
            constants.CRM_SYNC_FAILURES_ID,
            enforce_ssl=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            retention_period=Duration.days(constants.CRM_SYNC_FAILURE_RETENTION_DAYS),
            removal_policy=removal_policy,
        )
        Validations.of(self.failures).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself the end of the line: the stream event source's on-failure destination "
                "for records the CRM sync gave up on, kept 14 days for an operator and alarmed on its depth.",
            )
        )
        crm_sync.add_event_source(
            event_sources.DynamoEventSource(
                members,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=batch_size,
                max_batching_window=Duration.seconds(constants.CRM_SYNC_BATCH_WINDOW_SECONDS),
                report_batch_item_failures=True,
                retry_attempts=constants.CRM_SYNC_RETRY_ATTEMPTS,
                bisect_batch_on_error=True,
                on_failure=event_sources.SqsDlq(self.failures),
            )
        )


def _table_env(data: Tables, *specs: TableSpec) -> dict[str, str]:
    return {spec.env_var: data[spec].table_name for spec in specs}


def _table_arns(data: Tables, *specs: TableSpec) -> list[str]:
    return [data[spec].table_arn for spec in specs]


class EngagementStack(Stack):
    """Everything the engagement product needs in one account and region, for one stage."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        removal_policy = RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY
        retention = log_retention(config.log_retention_days)

        data = Tables(self, constants.TABLES_ID, removal_policy=removal_policy, deletion_protection=config.retain)
        secrets = Secrets(self, constants.SECRETS_ID, removal_policy=removal_policy)
        config_parameter = ssm.StringParameter(
            self,
            constants.CONFIG_PARAMETER_ID,
            parameter_name=constants.config_parameter_name(config.name),
            string_value="{}",
            description="Engagement taxonomy overrides (JSON), merged over the bundled default",
        )
        config_parameter_arn = config_parameter.parameter_arn
        assets = LambdaAssets(self, constants.LAMBDA_ASSETS_ID)

        def function(spec: FunctionSpec, environment: dict[str, str]) -> EngagementFunction:
            return EngagementFunction(
                self,
                spec.construct_id,
                spec=spec,
                assets=assets,
                environment={"POWERTOOLS_METRICS_NAMESPACE": constants.metrics_namespace(config.name), **environment},
                removal_policy=removal_policy,
                retention=retention,
            )

        config_env = {settings.CONFIG_PARAMETER: config_parameter.parameter_name}
        webhook_env = {
            **_table_env(data, *tables.ALL_TABLES),
            **config_env,
            settings.MAX_BODY_BYTES: str(settings.DEFAULT_MAX_BODY_BYTES),
            settings.RAW_RETENTION_DAYS: str(config.raw_retention_days),
        }
        platform_secrets = {constants.GITHUB_PATH: secrets.github, constants.DISCOURSE_PATH: secrets.discourse}
        platform_secret_vars = {
            constants.GITHUB_PATH: settings.GITHUB_WEBHOOK_SECRET,
            constants.DISCOURSE_PATH: settings.DISCOURSE_WEBHOOK_SECRET,
        }
        platform_specs = {
            constants.GITHUB_PATH: (constants.GITHUB_FUNCTION_ID, constants.GITHUB_HANDLER),
            constants.DISCOURSE_PATH: (constants.DISCOURSE_FUNCTION_ID, constants.DISCOURSE_HANDLER),
        }
        webhooks: dict[str, EngagementFunction] = {}
        for platform in (p for p in config.platforms if p in platform_specs):
            construct_id, handler = platform_specs[platform]
            secret = platform_secrets[platform]
            webhook = function(
                FunctionSpec(construct_id, handler, WEBHOOK_TIMEOUT, WEBHOOK_MEMORY_MB),
                {**webhook_env, _arn_var(platform_secret_vars[platform]): secret.secret_arn},
            )
            grant_store_events(webhook, lambda spec: data[spec].table_arn)
            webhook.allow("ReadSigningSecret", ["secretsmanager:GetSecretValue"], [secret.secret_arn])
            webhook.allow("ReadConfigOverrides", ["ssm:GetParameter"], [config_parameter_arn])
            webhooks[platform] = webhook

        community = CommunityWebhooks(
            self,
            constants.COMMUNITY_WEBHOOKS_ID,
            platforms=config.platforms,
            make_function=function,
            function_spec=FunctionSpec,
            tables_by_spec=data.__getitem__,
            environment=webhook_env,
            config_parameter_arn=config_parameter_arn,
            removal_policy=removal_policy,
        )

        recalc = function(
            FunctionSpec(constants.RECALC_FUNCTION_ID, constants.RECALC_HANDLER, RECALC_TIMEOUT, RECALC_MEMORY_MB),
            {**_table_env(data, tables.MEMBERS, tables.IDENTITIES, tables.AUDIT), **config_env},
        )
        # A refresh reads a merged member's parts in one batch and checks them in its transaction.
        recalc.allow(
            "RefreshMembers",
            [
                "dynamodb:Scan",
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:UpdateItem",
                "dynamodb:ConditionCheckItem",
            ],
            _table_arns(data, tables.MEMBERS),
        )
        # The identity rules an operator enabled (identity.auto_merge_rules) merge after the refresh: suggestions
        # scan identities, a merge reads (or, for a member older than the audit log, creates) each member's audit
        # key and appends to the audit log.
        recalc.allow(
            "ScanIdentities",
            ["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem"],
            _table_arns(data, tables.IDENTITIES),
        )
        recalc.allow("AppendIdentityAudit", ["dynamodb:PutItem"], _table_arns(data, tables.AUDIT))
        recalc.allow("ReadConfigOverrides", ["ssm:GetParameter"], [config_parameter_arn])

        crm_env = {
            **_table_env(data, tables.MEMBERS),
            **config_env,  # the sync reads the taxonomy's tiers to decide which promotions become CRM tasks
            settings.CRM_PROVIDER: config.crm_provider,
        }
        if config.crm_provider == "hubspot":
            crm_env[_arn_var(settings.HUBSPOT_TOKEN)] = secrets.hubspot.secret_arn
            crm_env[settings.HUBSPOT_BASE_URL] = settings.DEFAULT_HUBSPOT_BASE_URL
        elif config.crm_provider == "salesforce":
            pass  # infra/salesforce.py adds the credentials secret's ARN and the SALESFORCE_* settings
        else:
            crm_env[settings.OUTBOX_PATH] = constants.LAMBDA_OUTBOX_PATH
        crm_sync = function(
            FunctionSpec(
                constants.CRM_SYNC_FUNCTION_ID,
                constants.CRM_SYNC_HANDLER,
                CRM_SYNC_TIMEOUT,
                CRM_SYNC_MEMORY_MB,
                # 0 opts out (an account whose Lambda quota is 10 cannot reserve any); see docs/deploy.md.
                reserved_concurrency=config.crm_sync_concurrency or None,
            ),
            crm_env,
        )
        crm_sync.allow("ReadConfigOverrides", ["ssm:GetParameter"], [config_parameter_arn])
        if config.crm_provider == "hubspot":
            crm_sync.allow("ReadCrmToken", ["secretsmanager:GetSecretValue"], [secrets.hubspot.secret_arn])

        salesforce = (
            SalesforceCrm(
                self,
                constants.SALESFORCE_ID,
                config=config,
                data=data,
                crm_sync=crm_sync,
                make_function=function,
                function_spec=FunctionSpec,
                config_parameter_arn=config_parameter_arn,
                config_env=config_env,
                removal_policy=removal_policy,
            )
            if config.crm_provider == "salesforce"
            else None
        )

        admin = IdentityAdmin(
            self,
            "IdentityAdmin",
            data=data,
            make_function=function,
            function_spec=FunctionSpec,
            crm_env=crm_env,
            crm_secrets=[secrets.hubspot.secret_arn] if config.crm_provider == "hubspot" else [],
            config_parameter_arn=config_parameter_arn,
            removal_policy=removal_policy,
        )
        if salesforce is not None:
            salesforce.connect(admin.function)  # forget clears the person's community fields in Salesforce first

        pollers = Pollers(
            self,
            constants.POLLERS_ID,
            config=config,
            make_function=lambda cid, handler, timeout, memory, env: function(
                FunctionSpec(cid, handler, timeout, memory), env
            ),
            table_env=_table_env(data, *tables.ALL_TABLES),
            table_arns=lambda *specs: _table_arns(data, *specs),
            config_env=config_env,
            config_parameter_arn=config_parameter_arn,
            removal_policy=removal_policy,
        )

        api_construct = WebhookApi(
            self,
            constants.API_ID,
            config=config,
            functions={**{platform: fn.function for platform, fn in webhooks.items()}, **community.webhook_functions},
            removal_policy=removal_policy,
            route_throttles={ADMIN_METHOD_OPTIONS_KEY: ADMIN_THROTTLE},
        )
        api = api_construct.api
        community.add_events_route(api)
        admin.add_route(api)
        RecalcSchedule(self, constants.RECALC_SCHEDULE_ID, expression=config.recalc_schedule, recalc=recalc.function)
        stream = CrmSyncStream(
            self,
            constants.CRM_SYNC_STREAM_ID,
            members=data[tables.MEMBERS],
            crm_sync=crm_sync.function,
            removal_policy=removal_policy,
            batch_size=SALESFORCE_SYNC_BATCH_SIZE if salesforce is not None else constants.CRM_SYNC_BATCH_SIZE,
        )
        monitoring = Monitoring(
            self,
            constants.MONITORING_ID,
            config=config,
            webhooks={**{platform: fn.function for platform, fn in webhooks.items()}, **community.functions},
            recalc=recalc.function,
            crm_sync=crm_sync.function,
            api=api,
            failures=stream.failures,
            pollers=pollers.functions,
        )
        if api_construct.api.node.try_find_child("CloudWatchRole") is not None:
            Validations.of(api_construct.api.node.find_child("CloudWatchRole")).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs]",
                    reason="The account-wide role API Gateway itself assumes to write execution and access logs; "
                    "AWS documents this managed policy for it, and it is not used by any function.",
                )
            )

        crm = CrmIntegration(
            self,
            "Crm",
            crm_provider=config.crm_provider,
            data=data,
            make_function=function,
            function_spec=FunctionSpec,
            crm_sync=crm_sync,
            crm_env=crm_env,
            hubspot_token=secrets.hubspot,
            config_parameter_arn=config_parameter_arn,
            api=api,
            alarm_topic=monitoring.topic,
            removal_policy=removal_policy,
        )
        admin.add_alarms(monitoring.topic)
        if salesforce is not None:
            salesforce.connect(crm.reconcile)  # the reconcile job pushes through the same adapter
            monitoring.alarms.update(salesforce.alarms(monitoring.topic, monitoring.dashboard, monitoring.namespace))
            CfnOutput(self, SALESFORCE_SECRET_ARN_OUTPUT, value=salesforce.secret.secret_arn)

        CfnOutput(self, constants.API_URL_OUTPUT, value=api.url)
        if constants.GITHUB_PATH in webhooks:
            CfnOutput(self, constants.GITHUB_WEBHOOK_URL_OUTPUT, value=api.url_for_path(constants.GITHUB_WEBHOOK_PATH))
            CfnOutput(self, constants.GITHUB_SECRET_ARN_OUTPUT, value=secrets.github.secret_arn)
        if constants.DISCOURSE_PATH in webhooks:
            CfnOutput(
                self, constants.DISCOURSE_WEBHOOK_URL_OUTPUT, value=api.url_for_path(constants.DISCOURSE_WEBHOOK_PATH)
            )
            CfnOutput(self, constants.DISCOURSE_SECRET_ARN_OUTPUT, value=secrets.discourse.secret_arn)
        community.add_outputs(self, api)
        admin.add_outputs(self, api)
        CfnOutput(self, constants.CRM_SYNC_FAILURE_QUEUE_URL_OUTPUT, value=stream.failures.queue_url)
        CfnOutput(self, constants.HUBSPOT_SECRET_ARN_OUTPUT, value=secrets.hubspot.secret_arn)
        for platform, secret in pollers.secrets.items():
            CfnOutput(self, f"{platform.capitalize()}TokenSecretArn", value=secret.secret_arn)
        CfnOutput(self, constants.CONFIG_PARAMETER_OUTPUT, value=config_parameter.parameter_name)
        CfnOutput(self, constants.ALARM_TOPIC_OUTPUT, value=monitoring.topic.topic_arn)
        CfnOutput(self, constants.DASHBOARD_OUTPUT, value=monitoring.dashboard.dashboard_name)


def _arn_var(secret_var: str) -> str:
    """The env var holding a secret's ARN when deployed (the functions read the plain var locally)."""
    return secret_var + settings.SECRET_ARN_SUFFIX
