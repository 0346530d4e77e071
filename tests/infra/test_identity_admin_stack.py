"""The identity admin API in the template (issue 5): its route, token, throttle, role, alarms and outputs.

Values are written out from the requirements, not imported from infra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

HANDLER = "engagement.handlers.identity_admin.lambda_handler"


@pytest.fixture(scope="module")
def dev(dev_template_file: Path) -> dict[str, Any]:
    return json.loads(dev_template_file.read_text())


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _function_id(template: dict[str, Any]) -> str:
    (found,) = [
        k for k, r in _of_type(template, "AWS::Lambda::Function").items() if r["Properties"]["Handler"] == HANDLER
    ]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in _of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _role(template: dict[str, Any]) -> str:
    return str(template["Resources"][_function_id(template)]["Properties"]["Role"]["Fn::GetAtt"][0])


def test_any_method_under_admin_goes_to_the_admin_function(dev: dict[str, Any]) -> None:
    resources = _of_type(dev, "AWS::ApiGateway::Resource")
    (admin,) = [k for k, r in resources.items() if r["Properties"]["PathPart"] == "admin"]
    (proxy,) = [
        k
        for k, r in resources.items()
        if r["Properties"]["PathPart"] == "{proxy+}" and r["Properties"]["ParentId"] == {"Ref": admin}
    ]
    (method,) = [
        m["Properties"]
        for m in _of_type(dev, "AWS::ApiGateway::Method").values()
        if m["Properties"]["ResourceId"] == {"Ref": proxy}
    ]
    assert method["HttpMethod"] == "ANY"
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert _function_id(dev) in json.dumps(method["Integration"]["Uri"])
    # The function answers a missing or wrong token 401 itself; API Gateway adds no authorizer to bypass it.
    assert method.get("AuthorizationType", "NONE") == "NONE"


def test_the_token_is_a_generated_secret_only_this_function_reads(dev: dict[str, Any]) -> None:
    function = dev["Resources"][_function_id(dev)]["Properties"]
    token = function["Environment"]["Variables"]["ADMIN_API_TOKEN_ARN"]["Ref"]
    secret = dev["Resources"][token]["Properties"]
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    readers = [
        role
        for policy in _of_type(dev, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if {"Ref": token} in _as_list(statement["Resource"])
        for role in policy["Properties"]["Roles"]
    ]
    assert readers == [{"Ref": _role(dev)}]
    assert dev["Outputs"]["AdminApiTokenSecretArn"]["Value"] == {"Ref": token}
    assert "/admin" in json.dumps(dev["Outputs"]["AdminApiUrl"]["Value"])


def test_the_function_has_a_bounded_timeout_within_api_gateways_29_seconds(dev: dict[str, Any]) -> None:
    function = dev["Resources"][_function_id(dev)]["Properties"]
    assert function["Timeout"] <= 29
    assert function["Architectures"] == ["arm64"]


def test_the_admin_route_has_its_own_low_throttle(dev: dict[str, Any]) -> None:
    (stage,) = _of_type(dev, "AWS::ApiGateway::Stage").values()
    (route,) = [m for m in stage["Properties"]["MethodSettings"] if m["ResourcePath"] == "/~1admin~1{proxy+}"]
    assert route["HttpMethod"] == "*"
    assert route["ThrottlingRateLimit"] == 5 and route["ThrottlingBurstLimit"] == 10


def test_no_role_may_rewrite_or_delete_an_audit_entry(dev: dict[str, Any]) -> None:
    # "an audit log that no command rewrites": append (PutItem, conditional on a new entry id) and read only.
    for policy in _of_type(dev, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "IdentityAuditTable" in json.dumps(statement["Resource"]):
                assert set(_as_list(statement["Action"])) <= {"dynamodb:PutItem", "dynamodb:Query"}, statement


def test_the_admin_role_reads_the_audit_log_and_erases_people_elsewhere(dev: dict[str, Any]) -> None:
    actions: dict[str, set[str]] = {}
    for statement in _statements(dev, _role(dev)):
        for resource in _as_list(statement["Resource"]):
            text = json.dumps(resource)
            for table in ("MembersTable", "EventsTable", "IdentitiesTable", "RawPayloadsTable", "OutcomesTable"):
                if f'["{table}", "Arn"]' in text and "/index/" not in text:
                    actions.setdefault(table, set()).update(_as_list(statement["Action"]))
            if '["IdentityAuditTable", "Arn"]' in text:
                actions.setdefault("IdentityAuditTable", set()).update(_as_list(statement["Action"]))
    for table in ("MembersTable", "EventsTable", "IdentitiesTable", "RawPayloadsTable", "OutcomesTable"):
        assert "dynamodb:DeleteItem" in actions[table], table  # forget
    assert actions["IdentityAuditTable"] == {"dynamodb:PutItem", "dynamodb:Query"}
    assert "dynamodb:UpdateItem" not in actions["EventsTable"] and "dynamodb:PutItem" not in actions["EventsTable"]


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_errors_and_throttles_alarm_on_the_topic(dev: dict[str, Any], metric: str) -> None:
    (topic,) = _of_type(dev, "AWS::SNS::Topic")
    (alarm,) = [
        a["Properties"]
        for a in _of_type(dev, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == metric
        and a["Properties"].get("Dimensions") == [{"Name": "FunctionName", "Value": {"Ref": _function_id(dev)}}]
    ]
    assert alarm["AlarmActions"] == [{"Ref": topic}]
