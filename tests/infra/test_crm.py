"""infra/crm.py: reconcile schedule, HubSpot webhook route and pull, sync-state grants, alarms (issue 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

RECONCILE = "engagement.handlers.crm_reconcile.lambda_handler"
WEBHOOK = "engagement.handlers.hubspot_webhook.lambda_handler"
PULL = "engagement.handlers.hubspot_pull.lambda_handler"
CRM_SYNC = "engagement.handlers.crm_sync.lambda_handler"


@pytest.fixture(scope="session")
def dev(dev_template_file: Path) -> dict[str, Any]:
    return json.loads(dev_template_file.read_text())["Resources"]


@pytest.fixture(scope="session")
def outbox(variant_template_file: Path) -> dict[str, Any]:
    return json.loads(variant_template_file.read_text())["Resources"]


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def _function(resources: dict[str, Any], handler: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, v) for k, v in _of_type(resources, "AWS::Lambda::Function").items() if v["Properties"]["Handler"] == handler
    ]
    return found


def _table(resources: dict[str, Any], logical_prefix: str) -> str:
    (found,) = [k for k in _of_type(resources, "AWS::DynamoDB::Table") if k == logical_prefix]
    return found


def _statements(resources: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    _, function = _function(resources, handler)
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        s
        for p in _of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions_on(resources: dict[str, Any], handler: str, logical_id: str) -> set[str]:
    actions: set[str] = set()
    for statement in _statements(resources, handler):
        if logical_id in json.dumps(statement["Resource"]):
            action = statement["Action"]
            actions.update([action] if isinstance(action, str) else action)
    return actions


def test_tables_for_outcomes_and_sync_state_have_the_reserved_keys(dev):
    outcomes = dev[_table(dev, "OutcomesTable")]["Properties"]["KeySchema"]
    sync = dev[_table(dev, "SyncStateTable")]["Properties"]["KeySchema"]
    assert outcomes == [
        {"AttributeName": "member_id", "KeyType": "HASH"},
        {"AttributeName": "outcome_id", "KeyType": "RANGE"},
    ]
    assert sync == [
        {"AttributeName": "member_id", "KeyType": "HASH"},
        {"AttributeName": "sync_key", "KeyType": "RANGE"},
    ]


def test_reconcile_runs_hourly_and_only_reads_members(dev):
    function_id, function = _function(dev, RECONCILE)
    (rule,) = [
        r for r in _of_type(dev, "AWS::Events::Rule").values() if function_id in json.dumps(r["Properties"]["Targets"])
    ]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    # Issue 5: a task's reasons read a merged member's parts in one batch.
    assert _actions_on(dev, RECONCILE, "MembersTable") == {"dynamodb:Scan", "dynamodb:GetItem", "dynamodb:BatchGetItem"}
    assert "dynamodb:PutItem" in _actions_on(dev, RECONCILE, "SyncStateTable")
    assert function["Properties"]["Timeout"] == 300


def test_crm_sync_writes_sync_state_and_only_queries_the_events_indexes(dev):
    env = _function(dev, CRM_SYNC)[1]["Properties"]["Environment"]["Variables"]
    assert env["SYNC_TABLE"] == {"Ref": "SyncStateTable"} and "SLACK_WEBHOOK_URL_ARN" in env
    assert _actions_on(dev, CRM_SYNC, "EventsTable") == {"dynamodb:Query"}
    (events_statement,) = [s for s in _statements(dev, CRM_SYNC) if "EventsTable" in json.dumps(s["Resource"])]
    # A task's reasons are the person's events: by account (issue 5), and by member for any without an account.
    resources = json.dumps(events_statement["Resource"])
    assert "/index/by-member" in resources and "/index/by-account" in resources
    assert all("/index/" in json.dumps(r) for r in events_statement["Resource"])


def test_hubspot_webhook_route_and_least_privilege(dev):
    function_id, function = _function(dev, WEBHOOK)
    methods = [
        m for m in _of_type(dev, "AWS::ApiGateway::Method").values() if function_id in json.dumps(m["Properties"])
    ]
    (method,) = methods
    (resource,) = [
        r
        for k, r in _of_type(dev, "AWS::ApiGateway::Resource").items()
        if {"Ref": k} == method["Properties"]["ResourceId"]
    ]
    assert resource["Properties"]["PathPart"] == "hubspot" and method["Properties"]["HttpMethod"] == "POST"
    assert _actions_on(dev, WEBHOOK, "OutcomesTable") == {"dynamodb:PutItem"}
    assert _actions_on(dev, WEBHOOK, "IdentitiesTable") == {"dynamodb:GetItem"}
    assert _actions_on(dev, WEBHOOK, "MembersTable") == set()
    assert "HUBSPOT_CLIENT_SECRET_ARN" in function["Properties"]["Environment"]["Variables"]


def test_pull_runs_every_15_minutes(dev):
    function_id, _ = _function(dev, PULL)
    (rule,) = [
        r for r in _of_type(dev, "AWS::Events::Rule").values() if function_id in json.dumps(r["Properties"]["Targets"])
    ]
    assert rule["Properties"]["ScheduleExpression"] == "rate(15 minutes)"


def test_new_functions_have_error_throttle_and_missed_run_alarms(dev):
    names = {a["Properties"]["AlarmDescription"] for a in _of_type(dev, "AWS::CloudWatch::Alarm").values()}
    for name in ("CrmReconcile", "HubspotWebhook", "HubspotPull"):
        assert f"The {name} function failed at least once in 5 minutes (see its log group)." in names
        assert f"The {name} function was throttled in 5 minutes." in names
    assert "No successful CRM reconcile in the last 3 hours." in names


def test_outbox_stages_get_the_reconcile_but_no_hubspot_inbound(outbox):
    handlers = {f["Properties"]["Handler"] for f in _of_type(outbox, "AWS::Lambda::Function").values()}
    assert RECONCILE in handlers and WEBHOOK not in handlers and PULL not in handlers
