"""The pollers in the template: opt-in per stage, each with its function, schedule, token secret, grants and alarms.

Expected values are written out from issue 3 and docs/pollers.md, not imported from infra.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engagement import tables

HANDLERS = {
    "discord": "engagement.handlers.discord_poller.lambda_handler",
    "circle": "engagement.handlers.circle_poller.lambda_handler",
    "meetup": "engagement.handlers.meetup_poller.lambda_handler",
}
SCHEDULES = {"discord": "rate(15 minutes)", "circle": "rate(1 hour)", "meetup": "rate(1 hour)"}
TOKEN_VARS = {"discord": "DISCORD_BOT_TOKEN_ARN", "circle": "CIRCLE_API_TOKEN_ARN", "meetup": "MEETUP_TOKEN_ARN"}


@pytest.fixture(scope="session")
def pollers(pollers_template_file: Path) -> dict[str, Any]:
    return json.loads(pollers_template_file.read_text())


@pytest.fixture(scope="session")
def dev(dev_template_file: Path) -> dict[str, Any]:
    return json.loads(dev_template_file.read_text())


def _of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def _function_id(template: dict[str, Any], handler: str) -> str:
    (logical_id,) = [
        k for k, r in _of_type(template, "AWS::Lambda::Function").items() if r["Properties"]["Handler"] == handler
    ]
    return logical_id


def _statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    role = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in _of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _table_ref(template: dict[str, Any], spec: tables.TableSpec) -> dict[str, Any]:
    return {"Fn::GetAtt": [spec.logical_id, "Arn"]}


def _resources_key(resource: Any) -> str:
    """A statement's resources as an order-free key."""
    items = resource if isinstance(resource, list) else [resource]
    return json.dumps(sorted(json.dumps(i, sort_keys=True) for i in items))


def test_pollers_are_opt_in(dev: dict[str, Any]) -> None:
    handlers = {r["Properties"]["Handler"] for r in _of_type(dev, "AWS::Lambda::Function").values()}
    assert not handlers & set(HANDLERS.values())


def test_the_cursors_table_is_keyed_by_cursor_id(pollers: dict[str, Any]) -> None:
    table = pollers["Resources"]["CursorsTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "cursor_id", "KeyType": "HASH"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"


@pytest.mark.parametrize("platform", sorted(HANDLERS))
def test_each_poller_runs_on_its_schedule_without_lambda_retries(pollers: dict[str, Any], platform: str) -> None:
    function_id = _function_id(pollers, HANDLERS[platform])
    (rule,) = [
        r["Properties"]
        for r in _of_type(pollers, "AWS::Events::Rule").values()
        if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ]
    assert rule["ScheduleExpression"] == SCHEDULES[platform]
    assert rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    (config,) = [
        r["Properties"]
        for r in _of_type(pollers, "AWS::Lambda::EventInvokeConfig").values()
        if r["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert config["MaximumRetryAttempts"] == 0
    function = pollers["Resources"][function_id]["Properties"]
    assert (function["Timeout"], function["MemorySize"]) == (300, 512)


@pytest.mark.parametrize("platform", sorted(HANDLERS))
def test_each_poller_reads_only_its_own_token(pollers: dict[str, Any], platform: str) -> None:
    function_id = _function_id(pollers, HANDLERS[platform])
    env = pollers["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    secret_vars = [v for v in env if v.endswith("_ARN") and "TOKEN" in v or v.endswith("SECRET_ARN")]
    assert secret_vars == [TOKEN_VARS[platform]]
    granted = [s for s in _statements(pollers, function_id) if s["Action"] == "secretsmanager:GetSecretValue"]
    assert [s["Resource"] for s in granted] == [env[TOKEN_VARS[platform]]]
    assert env["CURSORS_TABLE"] == {"Ref": "CursorsTable"}


def test_targets_come_from_stage_context(pollers: dict[str, Any]) -> None:
    discord_env = pollers["Resources"][_function_id(pollers, HANDLERS["discord"])]["Properties"]["Environment"]
    meetup_env = pollers["Resources"][_function_id(pollers, HANDLERS["meetup"])]["Properties"]["Environment"]
    assert discord_env["Variables"]["DISCORD_CHANNEL_IDS"] == "900000000000000001,900000000000000002"
    assert meetup_env["Variables"]["MEETUP_GROUP_URLNAMES"] == "maple-devs"


@pytest.mark.parametrize("platform", sorted(HANDLERS))
def test_poller_table_grants_follow_least_privilege(pollers: dict[str, Any], platform: str) -> None:
    statements = _statements(pollers, _function_id(pollers, HANDLERS[platform]))
    dynamo = {
        _resources_key(s["Resource"]): sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        for s in statements
        if any(a.startswith("dynamodb:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    }
    expected = {
        # Issue 5: a merged member's parts are read in one batch and checked in the refresh transaction.
        _resources_key(_table_ref(pollers, tables.MEMBERS)): [
            "dynamodb:BatchGetItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        ],
        # Identity keys are put conditionally; each event moves its account's points ledger.
        _resources_key(_table_ref(pollers, tables.IDENTITIES)): [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        ],
        _resources_key(_table_ref(pollers, tables.EVENTS)): ["dynamodb:GetItem", "dynamodb:PutItem"],
        _resources_key(_table_ref(pollers, tables.CURSORS)): ["dynamodb:GetItem", "dynamodb:PutItem"],
        # A rule that links or merges appends to the identity audit log, never changing an entry.
        _resources_key(_table_ref(pollers, tables.AUDIT)): ["dynamodb:PutItem"],
        _resources_key(_table_ref(pollers, tables.RAW)): ["dynamodb:BatchWriteItem"],
    }
    assert dynamo == expected


@pytest.mark.parametrize(
    ("name", "platform"), [("DiscordPoller", "discord"), ("CirclePoller", "circle"), ("MeetupPoller", "meetup")]
)
def test_each_poller_has_error_and_throttle_alarms_on_the_topic(
    pollers: dict[str, Any], name: str, platform: str
) -> None:
    function_id = _function_id(pollers, HANDLERS[platform])
    alarms = [
        r["Properties"]
        for r in _of_type(pollers, "AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("Dimensions") == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
    ]
    assert sorted(a["MetricName"] for a in alarms) == ["Errors", "Throttles"]
    assert all(a["Threshold"] == 1 and len(a["AlarmActions"]) == 1 for a in alarms)


def test_token_secret_outputs(pollers: dict[str, Any]) -> None:
    assert {"DiscordTokenSecretArn", "CircleTokenSecretArn", "MeetupTokenSecretArn"} <= set(pollers["Outputs"])


def test_cfn_lint_is_clean_with_pollers(pollers_template_file: Path) -> None:
    # W3005 (a DependsOn CDK adds beside a Ref) is CDK's normal output, as in test_operations.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", str(pollers_template_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_unknown_poller_is_refused() -> None:
    from infra.stages import StageConfigError, resolve

    with pytest.raises(StageConfigError):
        resolve({"stage": "dev", "pollers": "discord,slack"}.get)
