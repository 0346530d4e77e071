"""Assertions on the synthesized CloudFormation template of the engagement stack.

Expected values come from the requirements (handler strings, env var names, limits), written out here
on purpose rather than imported from infra.constants, so a change in the stack code cannot silently
change what the tests expect. Table keys come from engagement.tables, the data-model contract.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from engagement import tables

PROJECT_ROOT = Path(__file__).resolve().parents[2]

GITHUB_HANDLER = "engagement.handlers.github_webhook.lambda_handler"
DISCOURSE_HANDLER = "engagement.handlers.discourse_webhook.lambda_handler"
RECALC_HANDLER = "engagement.handlers.recalc.lambda_handler"
CRM_SYNC_HANDLER = "engagement.handlers.crm_sync.lambda_handler"
WEBHOOK_HANDLERS = (GITHUB_HANDLER, DISCOURSE_HANDLER)
ALL_HANDLERS = (GITHUB_HANDLER, DISCOURSE_HANDLER, RECALC_HANDLER, CRM_SYNC_HANDLER)
# Issue 4's functions (infra/crm.py), tested in tests/infra/test_crm.py.
CRM_HANDLERS = (
    "engagement.handlers.crm_reconcile.lambda_handler",
    "engagement.handlers.hubspot_webhook.lambda_handler",
    "engagement.handlers.hubspot_pull.lambda_handler",
    # Issue 5's identity admin API (infra/identity_admin.py), tested in tests/infra/test_identity_admin_stack.py.
    "engagement.handlers.identity_admin.lambda_handler",
)

SECRET_ARN_VARS = ("GITHUB_WEBHOOK_SECRET_ARN", "DISCOURSE_WEBHOOK_SECRET_ARN", "HUBSPOT_TOKEN_ARN")
SECRET_VAR_BY_HANDLER = {
    GITHUB_HANDLER: "GITHUB_WEBHOOK_SECRET_ARN",
    DISCOURSE_HANDLER: "DISCOURSE_WEBHOOK_SECRET_ARN",
    RECALC_HANDLER: None,
    CRM_SYNC_HANDLER: "HUBSPOT_TOKEN_ARN",
}
TABLE_VARS_BY_HANDLER = {
    GITHUB_HANDLER: {"MEMBERS_TABLE", "EVENTS_TABLE", "IDENTITIES_TABLE", "RAW_TABLE"},
    DISCOURSE_HANDLER: {"MEMBERS_TABLE", "EVENTS_TABLE", "IDENTITIES_TABLE", "RAW_TABLE"},
    # identities: the identity rules an operator enabled to merge automatically (issue 5)
    RECALC_HANDLER: {"MEMBERS_TABLE", "IDENTITIES_TABLE"},
    CRM_SYNC_HANDLER: {"MEMBERS_TABLE", "EVENTS_TABLE"},  # events: the indexes, for task reasons
}
# Beyond the four core tables: the CRM sync keeps its sync state (and writes only there); what links or merges
# members appends to the identity audit log (issue 5).
EXTRA_TABLE_VARS_BY_HANDLER = {
    CRM_SYNC_HANDLER: {"SYNC_TABLE"},
    GITHUB_HANDLER: {"AUDIT_TABLE"},
    DISCOURSE_HANDLER: {"AUDIT_TABLE"},
    RECALC_HANDLER: {"AUDIT_TABLE"},
}
EXTRA_SECRET_VARS_BY_HANDLER = {CRM_SYNC_HANDLER: ("SLACK_WEBHOOK_URL_ARN",)}
WRITE_ACTIONS = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


@pytest.fixture(scope="session")
def template(dev_template_file: Path) -> Template:
    return Template.from_json(json.loads(dev_template_file.read_text()))


@pytest.fixture(scope="session")
def resources(template: Template) -> dict[str, dict[str, Any]]:
    return template.to_json()["Resources"]


def _of_type(resources: dict[str, dict[str, Any]], resource_type: str) -> dict[str, dict[str, Any]]:
    return {logical_id: r for logical_id, r in resources.items() if r["Type"] == resource_type}


def _function_id(resources: dict[str, dict[str, Any]], handler: str) -> str:
    (logical_id,) = [
        logical_id
        for logical_id, r in _of_type(resources, "AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == handler
    ]
    return logical_id


def _env(resources: dict[str, dict[str, Any]], handler: str) -> dict[str, Any]:
    return resources[_function_id(resources, handler)]["Properties"]["Environment"]["Variables"]


def _statements(resources: dict[str, dict[str, Any]], handler: str) -> list[dict[str, Any]]:
    """Every IAM statement attached to the function's execution role."""
    role = resources[_function_id(resources, handler)]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in _of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def _referenced_ids(value: Any) -> set[str]:
    """Logical ids a CloudFormation value points at through Ref or Fn::GetAtt."""
    if isinstance(value, dict):
        if "Ref" in value:
            return set() if value["Ref"].startswith("AWS::") else {value["Ref"]}  # not pseudo parameters
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        return set().union(*(_referenced_ids(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_referenced_ids(v) for v in value)) if value else set()
    return set()


def _granted(resources: dict[str, dict[str, Any]], handler: str, action_prefix: str) -> set[str]:
    """Logical ids of the resources the function may act on with actions starting with action_prefix."""
    return {
        logical_id
        for statement in _statements(resources, handler)
        if any(a.startswith(action_prefix) for a in _actions(statement))
        for logical_id in _referenced_ids(statement["Resource"])
    }


def _key_schema(spec: tables.TableSpec) -> list[dict[str, str]]:
    key_schema = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
    if spec.sort_key:
        key_schema.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
    return key_schema


def _table_id(resources: dict[str, dict[str, Any]], spec: tables.TableSpec) -> str:
    (logical_id,) = [
        logical_id
        for logical_id, r in _of_type(resources, "AWS::DynamoDB::Table").items()
        if r["Properties"]["KeySchema"] == _key_schema(spec)
    ]
    return logical_id


# Tables


def test_one_table_per_spec(template: Template) -> None:
    template.resource_count_is("AWS::DynamoDB::Table", len(tables.ALL_TABLES))


@pytest.mark.parametrize("spec", tables.ALL_TABLES, ids=lambda s: s.logical_id)
def test_table_keys_billing_pitr_and_encryption(template: Template, spec: tables.TableSpec) -> None:
    attributes = [{"AttributeName": spec.partition_key, "AttributeType": "S"}]
    if spec.sort_key:
        attributes.append({"AttributeName": spec.sort_key, "AttributeType": spec.sort_key_type})

    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": _key_schema(spec),
            "AttributeDefinitions": Match.array_with(attributes),
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            # AWS-managed KMS key: SSE on, no customer key.
            "SSESpecification": {"SSEEnabled": True},
        },
    )


def test_members_table_streams_new_and_old_images(resources: dict[str, dict[str, Any]]) -> None:
    streams = {
        logical_id: r["Properties"].get("StreamSpecification")
        for logical_id, r in _of_type(resources, "AWS::DynamoDB::Table").items()
    }
    members = _table_id(resources, tables.MEMBERS)

    assert streams.pop(members) == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert set(streams.values()) == {None}


def test_raw_table_expires_items(resources: dict[str, dict[str, Any]]) -> None:
    raw = resources[_table_id(resources, tables.RAW)]["Properties"]

    assert raw["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_events_table_indexes_by_member_and_by_account(resources: dict[str, dict[str, Any]]) -> None:
    events = resources[_table_id(resources, tables.EVENTS)]["Properties"]

    assert events["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "by-member",
            "KeySchema": [
                {"AttributeName": "member_id", "KeyType": "HASH"},
                {"AttributeName": "occurred_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {  # issue 5: an account's events wherever the account lives now (link, unlink, unmerge, task reasons)
            "IndexName": "by-account",
            "KeySchema": [
                {"AttributeName": "account", "KeyType": "HASH"},
                {"AttributeName": "occurred_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
    ]


def test_dev_tables_are_deleted_with_the_stack(template: Template) -> None:
    tables_by_id = template.find_resources("AWS::DynamoDB::Table")

    assert {r["DeletionPolicy"] for r in tables_by_id.values()} == {"Delete"}


# Functions


def test_four_python_arm64_functions_with_their_handlers(resources: dict[str, dict[str, Any]]) -> None:
    functions = _of_type(resources, "AWS::Lambda::Function").values()

    assert sorted(f["Properties"]["Handler"] for f in functions) == sorted(ALL_HANDLERS + CRM_HANDLERS)
    assert {f["Properties"]["Runtime"] for f in functions} == {"python3.13"}
    assert {tuple(f["Properties"]["Architectures"]) for f in functions} == {("arm64",)}


def test_functions_share_one_code_asset_and_one_layer(template: Template, resources: dict[str, Any]) -> None:
    functions = _of_type(resources, "AWS::Lambda::Function").values()
    (layer_id,) = template.find_resources("AWS::Lambda::LayerVersion")

    assert len({f["Properties"]["Code"]["S3Key"] for f in functions}) == 1
    assert {json.dumps(f["Properties"]["Layers"]) for f in functions} == {json.dumps([{"Ref": layer_id}])}
    template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleRuntimes": ["python3.13"], "CompatibleArchitectures": ["arm64"]},
    )


@pytest.mark.parametrize(
    ("handler", "timeout", "memory"),
    [
        (GITHUB_HANDLER, 10, 512),
        (DISCOURSE_HANDLER, 10, 512),
        (RECALC_HANDLER, 300, 512),
        (CRM_SYNC_HANDLER, 120, 256),
    ],
)
def test_function_limits(resources: dict[str, Any], handler: str, timeout: int, memory: int) -> None:
    properties = resources[_function_id(resources, handler)]["Properties"]

    assert properties["Timeout"] == timeout
    assert properties["MemorySize"] == memory


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_function_logs_to_its_own_log_group_kept_a_month(resources: dict[str, Any], handler: str) -> None:
    log_group = resources[_function_id(resources, handler)]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]

    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert resources[log_group]["Properties"]["RetentionInDays"] == 30


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_function_environment_names_only_its_tables(resources: dict[str, Any], handler: str) -> None:
    env = _env(resources, handler)
    table_vars = {"MEMBERS_TABLE", "EVENTS_TABLE", "IDENTITIES_TABLE", "RAW_TABLE"}

    assert env["POWERTOOLS_SERVICE_NAME"] == "engagement"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert table_vars & env.keys() == TABLE_VARS_BY_HANDLER[handler]
    for spec in tables.ALL_TABLES:
        if spec.env_var in env:
            assert env[spec.env_var] == {"Ref": _table_id(resources, spec)}


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_function_gets_only_its_own_secret(resources: dict[str, Any], handler: str) -> None:
    env = _env(resources, handler)
    own = SECRET_VAR_BY_HANDLER[handler]

    assert [var for var in SECRET_ARN_VARS if var in env] == ([own] if own else [])
    granted = _granted(resources, handler, "secretsmanager:")
    extra = {env[var]["Ref"] for var in EXTRA_SECRET_VARS_BY_HANDLER.get(handler, ())}
    if own:
        assert resources[env[own]["Ref"]]["Type"] == "AWS::SecretsManager::Secret"
        assert granted == {env[own]["Ref"]} | extra
    else:
        assert granted == set()


def test_crm_sync_talks_to_hubspot(resources: dict[str, Any]) -> None:
    env = _env(resources, CRM_SYNC_HANDLER)

    assert env["CRM_PROVIDER"] == "hubspot"
    assert env["HUBSPOT_BASE_URL"] == "https://api.hubapi.com"


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_table_grants_follow_least_privilege(resources: dict[str, Any], handler: str) -> None:
    table_ids = {spec.env_var: _table_id(resources, spec) for spec in tables.ALL_TABLES}
    expected = {table_ids[var] for var in TABLE_VARS_BY_HANDLER[handler]}
    extra = {table_ids[var] for var in EXTRA_TABLE_VARS_BY_HANDLER.get(handler, set())}
    writes = {
        logical_id
        for statement in _statements(resources, handler)
        if WRITE_ACTIONS & set(_actions(statement))
        for logical_id in _referenced_ids(statement["Resource"])
    }

    assert _granted(resources, handler, "dynamodb:") == expected | extra
    assert writes == (extra if handler == CRM_SYNC_HANDLER else expected | extra)


def test_no_policy_allows_every_action(resources: dict[str, Any]) -> None:
    policies = _of_type(resources, "AWS::IAM::Policy")

    assert policies
    for logical_id, policy in policies.items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert "*" not in _actions(statement), logical_id


# Secrets and configuration


def test_five_secrets_with_generated_placeholders(template: Template) -> None:
    # GitHub, Discourse, HubSpot token; and (infra/crm.py) HubSpot client secret, Slack webhook URL;
    # and (issue 5) the identity admin API's token.
    template.resource_count_is("AWS::SecretsManager::Secret", 6)
    assert all(
        "GenerateSecretString" in s["Properties"]
        for s in template.find_resources("AWS::SecretsManager::Secret").values()
    )


def test_config_overrides_parameter(template: Template, resources: dict[str, Any]) -> None:
    (parameter_id,) = template.find_resources(
        "AWS::SSM::Parameter",
        {"Properties": {"Name": "/engagement/dev/config-overrides", "Type": "String", "Value": "{}"}},
    )

    # Every function reads the taxonomy, the CRM sync included (its tiers decide which promotions become tasks).
    for handler in ALL_HANDLERS:
        env = _env(resources, handler)
        assert env["ENGAGEMENT_CONFIG_PARAMETER"] in ({"Ref": parameter_id}, "/engagement/dev/config-overrides")
        assert _granted(resources, handler, "ssm:") == {parameter_id}
        assert {a for st in _statements(resources, handler) for a in _actions(st) if a.startswith("ssm:")} == {
            "ssm:GetParameter"
        }


# API


@pytest.mark.parametrize(("platform", "handler"), [("github", GITHUB_HANDLER), ("discourse", DISCOURSE_HANDLER)])
def test_webhook_route_posts_to_its_function(resources: dict[str, Any], platform: str, handler: str) -> None:
    api_resources = _of_type(resources, "AWS::ApiGateway::Resource")
    (api_id,) = _of_type(resources, "AWS::ApiGateway::RestApi")
    (webhooks_id,) = [k for k, r in api_resources.items() if r["Properties"]["PathPart"] == "webhooks"]
    (platform_id,) = [k for k, r in api_resources.items() if r["Properties"]["PathPart"] == platform]
    (method,) = [
        r["Properties"]
        for r in _of_type(resources, "AWS::ApiGateway::Method").values()
        if r["Properties"]["ResourceId"] == {"Ref": platform_id}
    ]

    assert api_resources[webhooks_id]["Properties"]["ParentId"] == {"Fn::GetAtt": [api_id, "RootResourceId"]}
    assert api_resources[platform_id]["Properties"]["ParentId"] == {"Ref": webhooks_id}
    assert method["HttpMethod"] == "POST"
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert method["Integration"]["IntegrationHttpMethod"] == "POST"
    assert _function_id(resources, handler) in _referenced_ids(method["Integration"]["Uri"])


def test_api_has_only_the_three_webhook_methods_and_the_admin_proxy(template: Template) -> None:
    template.resource_count_is("AWS::ApiGateway::Method", 4)  # GitHub, Discourse, HubSpot; ANY /admin/{proxy+}


def test_api_stage_is_throttled_with_metrics(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "dev",
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {
                            "HttpMethod": "*",
                            "ResourcePath": "/*",
                            "ThrottlingRateLimit": 50,
                            "ThrottlingBurstLimit": 100,
                            "MetricsEnabled": True,
                        }
                    )
                ]
            ),
        },
    )


def test_webhook_url_outputs(template: Template) -> None:
    outputs = template.to_json()["Outputs"]

    assert {"ApiUrl", "GithubWebhookUrl", "DiscourseWebhookUrl", "CrmSyncFailureQueueUrl"} <= outputs.keys()
    assert outputs["GithubWebhookUrl"]["Value"]["Fn::Join"][1][-1] == "/webhooks/github"
    assert outputs["DiscourseWebhookUrl"]["Value"]["Fn::Join"][1][-1] == "/webhooks/discourse"
    assert outputs["ApiUrl"]["Value"]["Fn::Join"][1][0] == "https://"


# Schedule and stream


def test_recalc_runs_on_the_default_schedule(template: Template, resources: dict[str, Any]) -> None:
    recalc = _function_id(resources, RECALC_HANDLER)

    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 day)",
            "State": "ENABLED",
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [recalc, "Arn"]}})],
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"FunctionName": {"Fn::GetAtt": [recalc, "Arn"]}, "Principal": "events.amazonaws.com"},
    )


def test_members_stream_feeds_crm_sync_with_partial_failures(template: Template, resources: dict[str, Any]) -> None:
    (queue_id,) = template.find_resources("AWS::SQS::Queue")

    template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [_table_id(resources, tables.MEMBERS), "StreamArn"]},
            "FunctionName": {"Ref": _function_id(resources, CRM_SYNC_HANDLER)},
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 5,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumRetryAttempts": 5,
            "BisectBatchOnFunctionError": True,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}},
        },
    )


def test_failure_queue_is_encrypted_tls_only_and_kept_14_days(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 14 * 24 * 3600}
    )
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


# Other stages


@pytest.fixture(scope="session")
def prod_template(prod_template_file: Path) -> Template:
    return Template.from_json(json.loads(prod_template_file.read_text()))


def test_other_stages_retain_tables_and_read_their_context(prod_template: Template) -> None:
    tables_by_id = prod_template.find_resources("AWS::DynamoDB::Table")

    assert {r["DeletionPolicy"] for r in tables_by_id.values()} == {"Retain"}
    prod_template.has_resource_properties("AWS::ApiGateway::Stage", {"StageName": "prod"})
    prod_template.has_resource_properties("AWS::SSM::Parameter", {"Name": "/engagement/prod/config-overrides"})
    prod_template.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "rate(6 hours)"})


# The real CLI, with the Docker-free layer bundling


def _cdk_cli_missing() -> bool:
    return shutil.which("npx") is None or not (PROJECT_ROOT / "node_modules" / ".bin" / "cdk").exists()


@pytest.mark.synth
@pytest.mark.skipif(_cdk_cli_missing(), reason="needs npx and the CDK CLI from `npm install` (node_modules/.bin/cdk)")
def test_cdk_cli_synthesizes_and_bundles_the_layer_without_docker(tmp_path: Path) -> None:
    outdir = tmp_path / "cdk.out"
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        # cdk.json runs `python3 -m infra.app`: make that the interpreter running these tests.
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "CDK_OUTDIR": str(outdir),
    }

    result = subprocess.run(
        ["npx", "cdk", "synth", "-q", "--no-notices", "-o", str(outdir)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    template_file = outdir / "Engagement-dev.template.json"
    assert template_file.exists()
    resources = json.loads(template_file.read_text())["Resources"]
    (layer,) = _of_type(resources, "AWS::Lambda::LayerVersion").values()
    layer_dir = outdir / ("asset." + layer["Properties"]["Content"]["S3Key"].removesuffix(".zip"))
    assert (layer_dir / "python" / "httpx").is_dir()
    assert (layer_dir / "python" / "stamina").is_dir()
    assert (layer_dir / "python" / "aws_lambda_powertools").is_dir()
    code_key = resources[_function_id(resources, GITHUB_HANDLER)]["Properties"]["Code"]["S3Key"]
    code_dir = outdir / ("asset." + code_key.removesuffix(".zip"))
    assert (code_dir / "engagement" / "tables.py").is_file()
    assert not (code_dir / "engagement" / "local").exists()
    assert not (code_dir / "requirements.txt").exists()
