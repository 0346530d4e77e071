"""The Slack, Discord, Bevy and /events functions in the CDK app, on a stage that enables them.

Values are written out from the requirements (handlers, routes, env var names), not imported from infra.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HANDLERS = {
    "slack": "engagement.handlers.slack_webhook.lambda_handler",
    "discord": "engagement.handlers.discord_webhook.lambda_handler",
    "bevy": "engagement.handlers.bevy_webhook.lambda_handler",
    "events": "engagement.handlers.events_endpoint.lambda_handler",
}
SECRET_VARS = {
    "slack": {"SLACK_SIGNING_SECRET_ARN", "SLACK_BOT_TOKEN_ARN"},
    "discord": {"DISCORD_PUBLIC_KEY_ARN"},
    "bevy": {"BEVY_WEBHOOK_SECRET_ARN"},
    "events": {"EVENTS_SOURCE_SECRETS_ARN"},
}


@pytest.fixture(scope="session")
def template(community_template_file: Path) -> dict[str, Any]:
    return json.loads(community_template_file.read_text())


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def function_id(template: dict[str, Any], handler: str) -> str:
    (logical_id,) = [
        k for k, r in of_type(template, "AWS::Lambda::Function").items() if r["Properties"]["Handler"] == handler
    ]
    return logical_id


def statements(template: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    role = template["Resources"][function_id(template, handler)]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        s
        for p in of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict[str, Any]) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


@pytest.mark.parametrize("platform", HANDLERS)
def test_each_platform_has_its_function_with_its_own_secrets(template: dict[str, Any], platform: str) -> None:
    properties = template["Resources"][function_id(template, HANDLERS[platform])]["Properties"]
    env = properties["Environment"]["Variables"]
    assert properties["Runtime"] == "python3.13" and properties["Architectures"] == ["arm64"]
    assert properties["Timeout"] == (30 if platform == "events" else 10)
    own = {var for var in env if var.endswith("_ARN") and var != "ENGAGEMENT_CONFIG_PARAMETER_ARN"}
    assert own == SECRET_VARS[platform]
    secret_ids = {env[var]["Ref"] for var in own}
    assert all(template["Resources"][s]["Type"] == "AWS::SecretsManager::Secret" for s in secret_ids)
    granted = {
        json.dumps(r)
        for s in statements(template, HANDLERS[platform])
        if "secretsmanager:GetSecretValue" in actions(s)
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    assert granted == {json.dumps({"Ref": s}) for s in secret_ids}


def test_secrets_have_generated_placeholders(template: dict[str, Any]) -> None:
    secrets = of_type(template, "AWS::SecretsManager::Secret")
    # github, discourse, hubspot + slack signing, slack bot token, discord key, bevy, events sources
    # + (issue 4, infra/crm.py) the HubSpot app's client secret and the Slack alert webhook URL
    # + (issue 5) the identity admin API's bearer token
    assert len(secrets) == 11
    assert all("GenerateSecretString" in s["Properties"] for s in secrets.values())


@pytest.mark.parametrize("path", ["webhooks/slack", "webhooks/discord", "webhooks/bevy", "events"])
def test_routes_post_to_their_function(template: dict[str, Any], path: str) -> None:
    platform = path.rsplit("/", 1)[-1]
    resources = of_type(template, "AWS::ApiGateway::Resource")
    (resource_id,) = [k for k, r in resources.items() if r["Properties"]["PathPart"] == platform]
    (method,) = [
        m["Properties"]
        for m in of_type(template, "AWS::ApiGateway::Method").values()
        if m["Properties"]["ResourceId"] == {"Ref": resource_id}
    ]
    assert method["HttpMethod"] == "POST" and method["Integration"]["Type"] == "AWS_PROXY"
    assert function_id(template, HANDLERS[platform]) in json.dumps(method["Integration"]["Uri"])


def test_only_slack_may_update_events_to_withdraw_them(template: dict[str, Any]) -> None:
    for platform, handler in HANDLERS.items():
        updates = [
            json.dumps(s["Resource"]) for s in statements(template, handler) if "dynamodb:UpdateItem" in actions(s)
        ]
        touches_events = any("EventsTable" in r for r in updates)
        assert touches_events == (platform == "slack"), platform
        # Issue 5: each event also moves its account's points ledger (an identities item) in the same transaction.
        assert any("IdentitiesTable" in r for r in updates), platform


@pytest.mark.parametrize("platform", HANDLERS)
def test_each_function_has_error_throttle_and_bad_signature_alarms(template: dict[str, Any], platform: str) -> None:
    alarms = of_type(template, "AWS::CloudWatch::Alarm").values()
    fid = function_id(template, HANDLERS[platform])
    on_function = {
        a["Properties"]["MetricName"]
        for a in alarms
        if {"Name": "FunctionName", "Value": {"Ref": fid}} in a["Properties"].get("Dimensions", [])
    }
    assert {"Errors", "Throttles"} <= on_function
    assert any(
        a["Properties"].get("MetricName") == "BadSignatures"
        and {"Name": "platform", "Value": platform} in a["Properties"]["Dimensions"]
        for a in alarms
    )


def test_outputs_name_the_urls_and_secrets(template: dict[str, Any]) -> None:
    outputs = set(template["Outputs"])
    assert {"SlackWebhookUrl", "DiscordWebhookUrl", "BevyWebhookUrl", "EventsUrl"} <= outputs
    assert {
        "SlackSigningSecretArn",
        "SlackBotTokenArn",
        "DiscordPublicKeyArn",
        "BevyWebhookSecretArn",
        "EventsSourceSecretsArn",
    } <= outputs


def test_the_stage_passes_cfn_lint(community_template_file: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", str(community_template_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
