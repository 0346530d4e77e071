"""What an operator's review checks in the template: privileges, data protection, the API edge, functions,
alarms, stages, and the cdk-nag and cfn-lint verdicts.

Expected values are written out from the requirements (issue 6), not imported from infra, so a change in the
stack cannot silently change what is expected.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engagement import tables

GITHUB_HANDLER = "engagement.handlers.github_webhook.lambda_handler"
DISCOURSE_HANDLER = "engagement.handlers.discourse_webhook.lambda_handler"
RECALC_HANDLER = "engagement.handlers.recalc.lambda_handler"
CRM_SYNC_HANDLER = "engagement.handlers.crm_sync.lambda_handler"
ALL_HANDLERS = (GITHUB_HANDLER, DISCOURSE_HANDLER, RECALC_HANDLER, CRM_SYNC_HANDLER)

# Every action each function may take, per the calls the code makes (ssm:GetParameter for config overrides).
COMMON_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
WEBHOOK_ACTIONS = COMMON_ACTIONS | {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    # Issue 5: a merged member's parts, read in one batch and checked in the refresh transaction.
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
}
ACTIONS_BY_HANDLER = {
    GITHUB_HANDLER: WEBHOOK_ACTIONS,
    DISCOURSE_HANDLER: WEBHOOK_ACTIONS,
    RECALC_HANDLER: COMMON_ACTIONS
    | {
        "dynamodb:Scan",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "ssm:GetParameter",
        # Issue 5: merged members' parts, and the identity rules an operator enabled to merge automatically
        # (suggestions scan identities; a merge appends to the audit log, creating a member's audit key if missing).
        "dynamodb:BatchGetItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:PutItem",
    },
    CRM_SYNC_HANDLER: COMMON_ACTIONS
    | {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        # Issue 4: sync state (claims, synced versions) and the events by-member index for task reasons.
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
    },
}
# The only actions AWS authorizes on Resource "*" alone (no resource-level permissions).
RESOURCE_WILDCARD_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}

NAMESPACE = "CommunityEngagement/dev"  # custom metrics are per stage
SIGNATURE_HEADERS = {"github": "X-Hub-Signature-256", "discourse": "X-Discourse-Event-Signature"}

ACKNOWLEDGED_RULES = {
    "AwsSolutions-L1",
    "AwsSolutions-IAM5[Resource::*]",
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
    "AwsSolutions-APIG2",
    "AwsSolutions-APIG4",
    "AwsSolutions-COG4",
    "AwsSolutions-SMG4",
    "AwsSolutions-SQS3",
}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def dev(dev_template_file: Path) -> dict[str, Any]:
    return _load(dev_template_file)


@pytest.fixture(scope="session")
def prod(prod_template_file: Path) -> dict[str, Any]:
    return _load(prod_template_file)


@pytest.fixture(scope="session")
def variant(variant_template_file: Path) -> dict[str, Any]:
    return _load(variant_template_file)


def _of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def _function_id(template: dict[str, Any], handler: str) -> str:
    (logical_id,) = [
        k for k, r in _of_type(template, "AWS::Lambda::Function").items() if r["Properties"]["Handler"] == handler
    ]
    return logical_id


def _function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    return template["Resources"][_function_id(template, handler)]["Properties"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(template: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    role = _function(template, handler)["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in _of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    for inline in template["Resources"][role]["Properties"].get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return statements


def _allow_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Allow statement of the template (the TLS-only Deny statements on the queue and topic deny `sqs:*`/`sns:*`
    to anyone not using TLS, which takes nothing away from least privilege)."""
    statements = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] in (
            "AWS::IAM::Policy",
            "AWS::IAM::ManagedPolicy",
            "AWS::SQS::QueuePolicy",
            "AWS::SNS::TopicPolicy",
        ):
            statements += properties["PolicyDocument"]["Statement"]
        if resource["Type"] == "AWS::IAM::Role":
            statements += [s for p in properties.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    return [s for s in statements if s["Effect"] == "Allow"]


# 2. Least privilege


@pytest.mark.parametrize("stage", ["dev", "prod", "variant"])
def test_no_iam_statement_has_a_wildcard_action(request: pytest.FixtureRequest, stage: str) -> None:
    template = request.getfixturevalue(stage)

    for statement in _allow_statements(template):
        for action in _as_list(statement["Action"]):
            assert "*" not in action, statement


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_resource_wildcards_only_where_aws_requires_them(request: pytest.FixtureRequest, stage: str) -> None:
    template = request.getfixturevalue(stage)

    for statement in _allow_statements(template):
        if "*" in _as_list(statement["Resource"]):
            assert set(_as_list(statement["Action"])) <= RESOURCE_WILDCARD_ACTIONS, statement


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_each_role_has_exactly_the_actions_its_code_uses(dev: dict[str, Any], handler: str) -> None:
    actions = {a for s in _role_statements(dev, handler) for a in _as_list(s["Action"])}

    assert actions == ACTIONS_BY_HANDLER[handler]


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_roles_have_no_managed_policies(dev: dict[str, Any], handler: str) -> None:
    role = _function(dev, handler)["Role"]["Fn::GetAtt"][0]

    assert "ManagedPolicyArns" not in dev["Resources"][role]["Properties"]


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_logs_only_to_its_own_log_group(dev: dict[str, Any], handler: str) -> None:
    log_group = _function(dev, handler)["LoggingConfig"]["LogGroup"]["Ref"]
    (statement,) = [s for s in _role_statements(dev, handler) if "logs:PutLogEvents" in _as_list(s["Action"])]

    assert statement["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}


def test_webhooks_write_raw_bodies_only_in_batches_and_touch_no_index(dev: dict[str, Any]) -> None:
    raw = [
        k
        for k, r in _of_type(dev, "AWS::DynamoDB::Table").items()
        if r["Properties"]["KeySchema"][0]["AttributeName"] == "event_id" and len(r["Properties"]["KeySchema"]) == 2
    ]  # noqa: E501

    for handler in (GITHUB_HANDLER, DISCOURSE_HANDLER):
        for statement in _role_statements(dev, handler):
            assert "/index/" not in json.dumps(statement["Resource"])
            if raw[0] in json.dumps(statement["Resource"]):
                assert _as_list(statement["Action"]) == ["dynamodb:BatchWriteItem"]


# 3. Data protection


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_table_has_pitr_and_encryption(request: pytest.FixtureRequest, stage: str) -> None:
    template = request.getfixturevalue(stage)
    found = _of_type(template, "AWS::DynamoDB::Table").values()

    assert len(found) == len(tables.ALL_TABLES)
    for table in found:
        properties = table["Properties"]
        assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert properties["SSESpecification"]["SSEEnabled"] is True


def test_prod_keeps_its_data_and_protects_tables(prod: dict[str, Any]) -> None:
    stateful = ("AWS::DynamoDB::Table", "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup", "AWS::SQS::Queue")

    for resource_type in stateful:
        assert {r["DeletionPolicy"] for r in _of_type(prod, resource_type).values()} == {"Retain"}, resource_type
    for table in _of_type(prod, "AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is True


def test_dev_is_removable(dev: dict[str, Any]) -> None:
    for resource_type in ("AWS::DynamoDB::Table", "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup"):
        assert {r["DeletionPolicy"] for r in _of_type(dev, resource_type).values()} == {"Delete"}, resource_type
    for table in _of_type(dev, "AWS::DynamoDB::Table").values():
        assert not table["Properties"].get("DeletionProtectionEnabled", False)


@pytest.mark.parametrize(("stage", "days"), [("dev", "14"), ("prod", "90")])
def test_raw_retention_is_configured_per_stage(request: pytest.FixtureRequest, stage: str, days: str) -> None:
    template = request.getfixturevalue(stage)

    for handler in (GITHUB_HANDLER, DISCOURSE_HANDLER):
        assert _function(template, handler)["Environment"]["Variables"]["RAW_RETENTION_DAYS"] == days


@pytest.mark.parametrize("stage", ["dev", "prod", "variant"])
def test_secrets_reach_functions_only_as_arns(request: pytest.FixtureRequest, stage: str) -> None:
    template = request.getfixturevalue(stage)
    secret_ids = set(_of_type(template, "AWS::SecretsManager::Secret"))

    for function in _of_type(template, "AWS::Lambda::Function").values():
        for name, value in function["Properties"]["Environment"]["Variables"].items():
            if isinstance(value, dict) and value.get("Ref") in secret_ids:
                assert name.endswith("_ARN"), name
            assert "SecretString" not in json.dumps(value)
            assert "{{resolve:secretsmanager" not in json.dumps(value)


# 4. The API


def test_api_stage_has_access_logs_execution_errors_and_tracing(dev: dict[str, Any]) -> None:
    (stage,) = _of_type(dev, "AWS::ApiGateway::Stage").values()
    properties = stage["Properties"]
    (log_group,) = [
        part["Ref"]
        for part in properties["AccessLogSetting"]["DestinationArn"]["Fn::Join"][1]
        if isinstance(part, dict) and not part.get("Ref", "AWS::").startswith("AWS::")
    ]

    assert dev["Resources"][log_group]["Properties"]["RetentionInDays"] == 30
    assert json.loads(properties["AccessLogSetting"]["Format"])["status"] == "$context.status"
    assert properties["TracingEnabled"] is True
    (all_methods,) = [m for m in properties["MethodSettings"] if m["ResourcePath"] == "/*"]
    assert all_methods["LoggingLevel"] == "ERROR"
    assert all_methods["DataTraceEnabled"] is False


@pytest.mark.parametrize("platform", ["github", "discourse"])
def test_each_route_has_its_own_throttle(dev: dict[str, Any], platform: str) -> None:
    (stage,) = _of_type(dev, "AWS::ApiGateway::Stage").values()
    (route,) = [m for m in stage["Properties"]["MethodSettings"] if m["ResourcePath"] == f"/~1webhooks~1{platform}"]

    assert route["HttpMethod"] == "POST"
    assert route["ThrottlingRateLimit"] == 20
    assert route["ThrottlingBurstLimit"] == 40


@pytest.mark.parametrize("platform", ["github", "discourse"])
def test_api_requires_the_signature_header_before_any_lambda(dev: dict[str, Any], platform: str) -> None:
    (platform_id,) = [
        k for k, r in _of_type(dev, "AWS::ApiGateway::Resource").items() if r["Properties"]["PathPart"] == platform
    ]
    (method,) = [
        r["Properties"]
        for r in _of_type(dev, "AWS::ApiGateway::Method").values()
        if r["Properties"]["ResourceId"] == {"Ref": platform_id}
    ]
    validator = dev["Resources"][method["RequestValidatorId"]["Ref"]]["Properties"]

    assert method["RequestParameters"] == {f"method.request.header.{SIGNATURE_HEADERS[platform]}": True}
    assert validator["ValidateRequestParameters"] is True


def test_missing_signature_is_answered_401_like_the_functions(dev: dict[str, Any]) -> None:
    (response,) = _of_type(dev, "AWS::ApiGateway::GatewayResponse").values()
    body = json.loads(response["Properties"]["ResponseTemplates"]["application/json"])

    assert response["Properties"]["ResponseType"] == "BAD_REQUEST_PARAMETERS"
    assert response["Properties"]["StatusCode"] == "401"
    assert body["status"] == "refused"
    assert body["error"] == "missing_signature"
    assert "X-Hub-Signature-256" in body["message"] and "X-Discourse-Event-Signature" in body["message"]


def test_waf_is_a_context_flag(dev: dict[str, Any], prod: dict[str, Any]) -> None:
    assert not _of_type(dev, "AWS::WAFv2::WebACL")
    (acl,) = _of_type(prod, "AWS::WAFv2::WebACL").values()
    (association,) = _of_type(prod, "AWS::WAFv2::WebACLAssociation").values()
    (stage_id,) = _of_type(prod, "AWS::ApiGateway::Stage")

    assert acl["Properties"]["Scope"] == "REGIONAL"
    assert stage_id in json.dumps(association["Properties"]["ResourceArn"])


# 5. Functions


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_function_has_a_log_group_with_retention_and_a_bounded_timeout(
    request: pytest.FixtureRequest, stage: str
) -> None:
    template = request.getfixturevalue(stage)
    retention = {"dev": 30, "prod": 90}[stage]

    for function in _of_type(template, "AWS::Lambda::Function").values():
        properties = function["Properties"]
        log_group = template["Resources"][properties["LoggingConfig"]["LogGroup"]["Ref"]]
        assert log_group["Properties"]["RetentionInDays"] == retention
        assert 1 <= properties["Timeout"] <= 300
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert properties["LoggingConfig"]["LogFormat"] == "JSON"
        assert properties["Runtime"] == "python3.13"
        assert properties["Architectures"] == ["arm64"]


def test_only_the_crm_sync_has_reserved_concurrency(dev: dict[str, Any]) -> None:
    reserved = {
        r["Properties"]["Handler"]: r["Properties"].get("ReservedConcurrentExecutions")
        for r in _of_type(dev, "AWS::Lambda::Function").values()
    }

    crm_functions = {
        f"engagement.handlers.{name}.lambda_handler": None
        for name in ("crm_reconcile", "hubspot_webhook", "hubspot_pull", "identity_admin")
    }
    assert reserved == {
        GITHUB_HANDLER: None,
        DISCOURSE_HANDLER: None,
        RECALC_HANDLER: None,
        CRM_SYNC_HANDLER: 2,
        **crm_functions,
    }


# 6. Alarms and dashboard


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in _of_type(template, "AWS::CloudWatch::Alarm").items()}


def _alarm_on(template: dict[str, Any], metric_name: str, namespace: str) -> list[dict[str, Any]]:
    return [
        a for a in _alarms(template).values() if a.get("MetricName") == metric_name and a.get("Namespace") == namespace
    ]


def test_every_alarm_targets_the_one_topic(dev: dict[str, Any]) -> None:
    (topic_id,) = _of_type(dev, "AWS::SNS::Topic")

    # Errors and throttles for 4 functions, API 5xx, iterator age, queue depth, recalc lag, 2 bad-signature alarms;
    # and (infra/crm.py) errors and throttles for reconcile, HubSpot webhook and pull, and reconcile lag;
    # and (issue 5) errors and throttles for the identity admin API.
    assert len(_alarms(dev)) == 14 + 7 + 2
    for alarm in _alarms(dev).values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]


@pytest.mark.parametrize("handler", ALL_HANDLERS)
@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_function_error_and_throttle_alarms(dev: dict[str, Any], handler: str, metric: str) -> None:
    function_id = _function_id(dev, handler)
    (alarm,) = [
        a
        for a in _alarm_on(dev, metric, "AWS/Lambda")
        if a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
    ]

    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_api_5xx_rate_alarm(dev: dict[str, Any]) -> None:
    (alarm,) = _alarm_on(dev, "5XXError", "AWS/ApiGateway")

    assert alarm["Statistic"] == "Average"
    assert alarm["Threshold"] == 0.05


def test_stream_iterator_age_and_failure_queue_alarms(dev: dict[str, Any]) -> None:
    crm_sync = _function_id(dev, CRM_SYNC_HANDLER)
    (queue_id,) = _of_type(dev, "AWS::SQS::Queue")
    (age,) = _alarm_on(dev, "IteratorAge", "AWS/Lambda")
    (depth,) = _alarm_on(dev, "ApproximateNumberOfMessagesVisible", "AWS/SQS")

    assert age["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": crm_sync}}]
    assert age["Statistic"] == "Maximum"
    assert depth["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    assert depth["Threshold"] == 1


def test_recalc_lag_alarm_breaches_without_a_successful_run_in_25_hours(dev: dict[str, Any]) -> None:
    recalc = _function_id(dev, RECALC_HANDLER)
    (alarm,) = [a for a in _alarms(dev).values() if "Metrics" in a and recalc in json.dumps(a["Metrics"])]
    metrics = {m["Id"]: m for m in alarm["Metrics"]}

    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["EvaluationPeriods"] * metrics["invocations"]["MetricStat"]["Period"] >= 25 * 3600
    assert alarm["TreatMissingData"] == "breaching"
    for name in ("invocations", "errors"):
        stat = metrics[name]["MetricStat"]["Metric"]
        assert stat["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": recalc}}]


@pytest.mark.parametrize("platform", ["github", "discourse"])
def test_bad_signature_alarm_per_platform(dev: dict[str, Any], platform: str) -> None:
    (alarm,) = [
        a
        for a in _alarm_on(dev, "BadSignatures", NAMESPACE)
        if {"Name": "platform", "Value": platform} in a["Dimensions"]
    ]

    assert {"Name": "service", "Value": "engagement"} in alarm["Dimensions"]
    assert alarm["Statistic"] == "Sum"


def test_alarm_email_subscription_is_configurable(dev: dict[str, Any], prod: dict[str, Any]) -> None:
    assert not _of_type(dev, "AWS::SNS::Subscription")
    (subscription,) = _of_type(prod, "AWS::SNS::Subscription").values()

    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"


def test_dashboard_shows_ingest_scores_crm_updates_and_failures(dev: dict[str, Any]) -> None:
    (dashboard,) = _of_type(dev, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])

    for metric in ("ActivitiesStored", "ScoresRecalculated", "CrmUpdates", "CrmFailures", "BadSignatures"):
        assert metric in body
    assert '\\"platform\\",\\"github\\"' in body and '\\"platform\\",\\"discourse\\"' in body


# 1. Stages


def test_a_stage_can_enable_platforms_and_choose_the_crm(variant: dict[str, Any]) -> None:
    handlers = {r["Properties"]["Handler"] for r in _of_type(variant, "AWS::Lambda::Function").values()}
    env = _function(variant, CRM_SYNC_HANDLER)["Environment"]["Variables"]

    # The reconcile (infra/crm.py) runs for any CRM; HubSpot's inbound functions only with HubSpot; the identity
    # admin API (issue 5) is on every stage, at ANY /admin/{proxy+}.
    assert handlers == {
        GITHUB_HANDLER,
        RECALC_HANDLER,
        CRM_SYNC_HANDLER,
        "engagement.handlers.crm_reconcile.lambda_handler",
        "engagement.handlers.identity_admin.lambda_handler",
    }
    assert sorted(m["Properties"]["HttpMethod"] for m in _of_type(variant, "AWS::ApiGateway::Method").values()) == [
        "ANY",
        "POST",
    ]
    assert "DiscourseWebhookUrl" not in variant["Outputs"]
    assert env["CRM_PROVIDER"] == "outbox"
    assert env["OUTBOX_PATH"].startswith("/tmp/")
    assert "HUBSPOT_TOKEN_ARN" not in env
    # Only the Slack alert webhook (issue 4; alerts do not depend on the CRM) is a secret here.
    secret_resources = [
        s["Resource"]
        for s in _role_statements(variant, CRM_SYNC_HANDLER)
        if any(a.startswith("secretsmanager:") for a in _as_list(s["Action"]))
    ]
    assert secret_resources == [{"Ref": env["SLACK_WEBHOOK_URL_ARN"]["Ref"]}]
    assert not _of_type(variant, "AWS::ApiGateway::Account")
    # crm_sync_concurrency=0: no reservation, for accounts whose Lambda quota is 10.
    assert "ReservedConcurrentExecutions" not in _function(variant, CRM_SYNC_HANDLER)
    assert _function(variant, GITHUB_HANDLER)["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == (
        "CommunityEngagement/staging"
    )
    # An unlisted stage starts from prod's settings: it keeps its data.
    assert {r["DeletionPolicy"] for r in _of_type(variant, "AWS::DynamoDB::Table").values()} == {"Retain"}


# 7. Checks: cdk-nag (run by every synthesis above) and cfn-lint


def _acknowledged(template_file: Path) -> dict[str, str]:
    metadata = _load(template_file.with_name(template_file.name.replace(".template.json", ".metadata.json")))
    return {
        rule.removeprefix("Annotation::"): reason
        for entries in metadata.values()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    }


def test_cdk_nag_acknowledgements_are_the_reviewed_ones(dev_template_file: Path, prod_template_file: Path) -> None:
    # Reaching here means app.synth() passed AwsSolutionsChecks: every remaining finding is acknowledged.
    dev_acks, prod_acks = _acknowledged(dev_template_file), _acknowledged(prod_template_file)

    assert set(prod_acks) == ACKNOWLEDGED_RULES
    assert set(dev_acks) == ACKNOWLEDGED_RULES | {"AwsSolutions-APIG3"}  # no WAF in dev
    assert all(len(reason) > 80 for reason in dev_acks.values())


def test_cfn_lint_is_clean(dev_template_file: Path, prod_template_file: Path, variant_template_file: Path) -> None:
    # W3005 (a DependsOn CDK adds beside a Ref) is CDK's normal output, not a defect: ignored as TOOLCHAIN.md says.
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--ignore-checks",
            "W3005",
            "--",
            str(dev_template_file),
            str(prod_template_file),
            str(variant_template_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_cloudwatch_may_publish_alarms_to_the_topic(dev: dict[str, Any]) -> None:
    # enforce_ssl replaces SNS's default topic policy; without an Allow, alarm notifications are refused.
    (policy,) = _of_type(dev, "AWS::SNS::TopicPolicy").values()
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert "aws:SourceAccount" in allow["Condition"]["StringEquals"]


def test_webhooks_never_update_events_and_update_identities_only_for_the_account_ledger(dev: dict[str, Any]) -> None:
    for handler in (GITHUB_HANDLER, DISCOURSE_HANDLER):
        updated = [
            json.dumps(statement["Resource"])
            for statement in _role_statements(dev, handler)
            if "dynamodb:UpdateItem" in _as_list(statement["Action"])
        ]
        # Members (scores) and, since issue 5, the account's points ledger on its identities item; never events.
        assert sorted(updated) == sorted(
            ['{"Fn::GetAtt": ["MembersTable", "Arn"]}', '{"Fn::GetAtt": ["IdentitiesTable", "Arn"]}']
        )


def test_functions_emit_metrics_in_their_stages_namespace(dev: dict[str, Any], prod: dict[str, Any]) -> None:
    for template, stage in ((dev, "dev"), (prod, "prod")):
        for function in _of_type(template, "AWS::Lambda::Function").values():
            assert function["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == (
                f"CommunityEngagement/{stage}"
            )
