"""The stack with `-c crm_provider=salesforce`: the credentials secret, the CRM sync's settings, and the scheduled
pull with least privilege, its schedule and alarms. Expected values are written out from the requirements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import synthesize

PULL_HANDLER = "engagement.handlers.salesforce_pull.lambda_handler"
CRM_SYNC_HANDLER = "engagement.handlers.crm_sync.lambda_handler"
RECONCILE_HANDLER = "engagement.handlers.crm_reconcile.lambda_handler"
CONTEXT = {
    "crm_provider": "salesforce",
    "salesforce_object": "Lead",
    "salesforce_duplicate_rule_header": "allowSave=true",
    "salesforce_pull_schedule": "rate(30 minutes)",
}


@pytest.fixture(scope="session")
def sf_template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("cdk.out.sf"), "sfdev", **CONTEXT)


@pytest.fixture(scope="session")
def sf(sf_template_file: Path) -> dict[str, Any]:
    return json.loads(sf_template_file.read_text())


def _of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def _function_id(template: dict[str, Any], handler: str) -> str:
    (logical_id,) = [
        k for k, r in _of_type(template, "AWS::Lambda::Function").items() if r["Properties"]["Handler"] == handler
    ]
    return logical_id


def _function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    return template["Resources"][_function_id(template, handler)]["Properties"]


def _statements(template: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    role = _function(template, handler)["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in _of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _table_id(template: dict[str, Any], env_var: str) -> str:
    return _function(template, PULL_HANDLER)["Environment"]["Variables"][env_var]["Ref"]


def _salesforce_secret(template: dict[str, Any]) -> str:
    (secret,) = [
        k
        for k, r in _of_type(template, "AWS::SecretsManager::Secret").items()
        if "Salesforce" in r["Properties"]["Description"]
    ]
    return secret


def test_crm_sync_reads_salesforce_credentials_only(sf: dict[str, Any]) -> None:
    env = _function(sf, CRM_SYNC_HANDLER)["Environment"]["Variables"]
    secret = _salesforce_secret(sf)

    assert env["CRM_PROVIDER"] == "salesforce"
    assert env["SALESFORCE_CREDENTIALS_ARN"] == {"Ref": secret}
    assert env["SALESFORCE_OBJECT"] == "Lead"
    assert env["SALESFORCE_API_VERSION"] == "66.0"
    assert env["SALESFORCE_DUPLICATE_RULE_HEADER"] == "allowSave=true"
    assert "HUBSPOT_TOKEN_ARN" not in env and "OUTBOX_PATH" not in env
    granted = {
        json.dumps(r, sort_keys=True)
        for s in _statements(sf, CRM_SYNC_HANDLER)
        if "secretsmanager:GetSecretValue" in _as_list(s["Action"])
        for r in _as_list(s["Resource"])
    }
    hubspot = [
        k
        for k, r in _of_type(sf, "AWS::SecretsManager::Secret").items()
        if "HubSpot private app" in r["Properties"]["Description"]
    ]
    assert json.dumps({"Ref": secret}) in granted
    assert not any(json.dumps({"Ref": h}) in granted for h in hubspot)


def test_secret_placeholder_is_json_of_the_right_shape(sf: dict[str, Any]) -> None:
    generate = sf["Resources"][_salesforce_secret(sf)]["Properties"]["GenerateSecretString"]

    assert json.loads(generate["SecretStringTemplate"]).keys() == {"login_url", "client_id"}
    assert generate["GenerateStringKey"] == "client_secret"


def test_pull_function_has_exactly_the_permissions_it_uses(sf: dict[str, Any]) -> None:
    members, identities, outcomes, sync = (
        _table_id(sf, "MEMBERS_TABLE"),
        _table_id(sf, "IDENTITIES_TABLE"),
        _table_id(sf, "OUTCOMES_TABLE"),
        _table_id(sf, "SYNC_TABLE"),
    )
    by_action: dict[str, set[str]] = {}
    for statement in _statements(sf, PULL_HANDLER):
        for action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                by_action.setdefault(action, set()).add(json.dumps(resource, sort_keys=True))

    def arn(logical_id: str) -> str:
        return json.dumps({"Fn::GetAtt": [logical_id, "Arn"]}, sort_keys=True)

    # Links by member or email identity; outcomes are conditional puts; the mark is one sync-state item.
    assert by_action["dynamodb:GetItem"] == {arn(members), arn(identities), arn(sync)}
    assert by_action["dynamodb:PutItem"] == {arn(outcomes), arn(sync)}
    assert by_action["secretsmanager:GetSecretValue"] == {json.dumps({"Ref": _salesforce_secret(sf)})}
    assert set(by_action) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


@pytest.mark.parametrize(
    "handler",
    [
        RECONCILE_HANDLER,
        # forget (issue 5) clears the person's community fields in Salesforce before erasing anything
        "engagement.handlers.identity_admin.lambda_handler",
    ],
)
def test_reconcile_job_and_admin_api_reach_salesforce_too(sf: dict[str, Any], handler: str) -> None:
    env = _function(sf, handler)["Environment"]["Variables"]
    secret = _salesforce_secret(sf)

    assert env["CRM_PROVIDER"] == "salesforce"
    assert env["SALESFORCE_CREDENTIALS_ARN"] == {"Ref": secret}
    assert env["SALESFORCE_OBJECT"] == "Lead"
    granted = {
        json.dumps(r, sort_keys=True)
        for s in _statements(sf, handler)
        if "secretsmanager:GetSecretValue" in _as_list(s["Action"])
        for r in _as_list(s["Resource"])
    }
    assert json.dumps({"Ref": secret}) in granted
    assert "HUBSPOT_TOKEN_ARN" not in env


def test_outcomes_table_is_keyed_by_member_and_outcome(sf: dict[str, Any]) -> None:
    table = sf["Resources"][_table_id(sf, "OUTCOMES_TABLE")]["Properties"]

    assert table["KeySchema"] == [
        {"AttributeName": "member_id", "KeyType": "HASH"},
        {"AttributeName": "outcome_id", "KeyType": "RANGE"},
    ]


def test_pull_runs_on_its_schedule(sf: dict[str, Any]) -> None:
    pull = _function_id(sf, PULL_HANDLER)
    rules = [
        r["Properties"]
        for r in _of_type(sf, "AWS::Events::Rule").values()
        if any(t["Arn"] == {"Fn::GetAtt": [pull, "Arn"]} for t in r["Properties"]["Targets"])
    ]

    assert len(rules) == 1
    assert rules[0]["ScheduleExpression"] == "rate(30 minutes)"
    assert rules[0]["Targets"][0]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}
    assert _function(sf, PULL_HANDLER)["Timeout"] == 300


def test_pull_errors_and_throttles_alarm_on_the_topic(sf: dict[str, Any]) -> None:
    pull = _function_id(sf, PULL_HANDLER)
    alarms = [
        r["Properties"]
        for r in _of_type(sf, "AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("Dimensions") == [{"Name": "FunctionName", "Value": {"Ref": pull}}]
    ]
    topic = next(iter(_of_type(sf, "AWS::SNS::Topic")))

    assert sorted(a["MetricName"] for a in alarms) == ["Errors", "Throttles"]
    assert all(a["AlarmActions"] == [{"Ref": topic}] for a in alarms)


def test_default_stage_has_no_salesforce_resources(dev_template_file: Path) -> None:
    dev = json.loads(dev_template_file.read_text())
    handlers = {r["Properties"]["Handler"] for r in _of_type(dev, "AWS::Lambda::Function").values()}

    assert PULL_HANDLER not in handlers
    assert not any(
        "Salesforce" in r["Properties"]["Description"] for r in _of_type(dev, "AWS::SecretsManager::Secret").values()
    )


def test_cfn_lint_is_clean_for_the_salesforce_stage(sf_template_file: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", str(sf_template_file)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_stream_batches_fill_one_salesforce_collection(sf: dict[str, Any]) -> None:
    sync = _function_id(sf, CRM_SYNC_HANDLER)
    (mapping,) = [
        r["Properties"]
        for r in _of_type(sf, "AWS::Lambda::EventSourceMapping").values()
        if r["Properties"]["FunctionName"] == {"Ref": sync}
    ]

    assert mapping["BatchSize"] == 200
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
