"""POST /webhooks/discord: Ed25519 verification, both PINGs, and every interaction/webhook-event sample."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from nacl.signing import SigningKey

from engagement.domain import discord
from engagement.handlers import discord_webhook, ingest
from tests.conftest import response_json, rest_event, sample

SIGNING_KEY = SigningKey(bytes(range(32)))  # a fixed test key; Discord holds the real private key
PUBLIC_KEY = SIGNING_KEY.verify_key.encode().hex()


@pytest.fixture
def discord_deps(deps, monkeypatch):
    monkeypatch.setenv("DISCORD_PUBLIC_KEY", PUBLIC_KEY)
    return deps


def signed(body: bytes, clock, key: SigningKey = SIGNING_KEY) -> dict[str, str]:
    timestamp = str(int(clock.now.timestamp()))
    return {
        "Content-Type": "application/json",
        "X-Signature-Timestamp": timestamp,
        "X-Signature-Ed25519": key.sign(timestamp.encode() + body).signature.hex(),
        "User-Agent": "Discord-Interactions/1.0 (+https://discord.com)",
    }


def post(deps, body: bytes, headers: dict[str, str]):
    return ingest.handle(discord_webhook.PLATFORM, rest_event(body, headers, path="/webhooks/discord"), deps)


def jsonc(relative: str) -> dict:
    """The published webhook-event examples carry `// user data` comments; without them they are JSON."""
    text = sample(relative).read_text(encoding="utf-8")
    return json.loads(re.sub(r"//[^\n]*", "", text))


def count(deps, table: str) -> int:
    return deps.store.client.scan(TableName=table, Select="COUNT")["Count"]


def test_an_interaction_ping_is_answered_with_pong(discord_deps, clock):
    body = json.dumps({"id": "1", "application_id": "2", "type": 1, "token": "t", "version": 1}).encode()
    response = post(discord_deps, body, signed(body, clock))
    assert response["statusCode"] == 200 and response_json(response) == {"type": 1}


def test_a_webhook_events_ping_is_answered_204_empty(discord_deps, clock):
    body = json.dumps({"version": 1, "application_id": "1234560123453231555", "type": 0}).encode()
    response = post(discord_deps, body, signed(body, clock))
    assert response["statusCode"] == 204 and response["body"] == ""


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda h, b: (h | {"X-Signature-Ed25519": "00" * 64}, b), "bad_signature"),
        (lambda h, b: (h, b + b" "), "bad_signature"),
        (lambda h, b: (h | {"X-Signature-Ed25519": "not-hex"}, b), "bad_signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "X-Signature-Ed25519"}, b), "missing_signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "X-Signature-Timestamp"}, b), "missing_timestamp"),
    ],
)
def test_an_invalid_signature_is_401(discord_deps, clock, tamper, code):
    body = json.dumps({"id": "1", "application_id": "2", "type": 1, "token": "t", "version": 1}).encode()
    headers, sent = tamper(signed(body, clock), body)
    response = post(discord_deps, sent, headers)
    assert response["statusCode"] == 401 and response_json(response)["error"] == code


def test_a_request_signed_by_another_key_is_401(discord_deps, clock):
    body = json.dumps({"type": 1, "token": "t"}).encode()
    response = post(discord_deps, body, signed(body, clock, SigningKey(bytes(32))))
    assert response["statusCode"] == 401


def test_a_replayed_request_is_401(discord_deps, clock):
    body = json.dumps({"type": 1, "token": "t"}).encode()
    headers = signed(body, clock)
    clock.now = datetime.fromtimestamp(int(headers["X-Signature-Timestamp"]) + 301, UTC)
    response = post(discord_deps, body, headers)
    assert response["statusCode"] == 401 and response_json(response)["error"] == "stale_timestamp"


@pytest.mark.parametrize("name", ["interaction.user_command.json", "interaction.message_command.json"])
def test_sample_commands_get_an_ephemeral_reply_and_note_the_account(discord_deps, clock, name):
    payload = json.loads(sample(f"discord/{name}").read_text())
    outcome = discord.classify(payload, clock.now)
    assert outcome.code == "identity" and "application_command" in outcome.reason
    body = json.dumps(payload).encode()
    response = post(discord_deps, body, signed(body, clock))
    assert response["statusCode"] == 200
    reply = response_json(response)
    assert reply["type"] == 4 and reply["data"]["flags"] == 64
    user_id = payload["member"]["user"]["id"]
    assert discord_deps.store.member_for_key(f"account#discord:{user_id}") is not None
    assert count(discord_deps, discord_deps.settings.events_table) == 0


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("webhook_event.APPLICATION_AUTHORIZED.published.jsonc", "no_mapping"),  # its user object is elided
        ("webhook_event.APPLICATION_DEAUTHORIZED.published.jsonc", "no_mapping"),
        ("webhook_event.ENTITLEMENT_CREATE.published.jsonc", "no_mapping"),
    ],
)
def test_sample_webhook_events_are_ignored_with_a_reason_and_answered_204(discord_deps, clock, name, code):
    payload = jsonc(f"discord/{name}")
    outcome = discord.classify(payload, clock.now)
    assert outcome.code == code and payload["event"]["type"] in outcome.reason
    body = json.dumps(payload).encode()
    response = post(discord_deps, body, signed(body, clock))
    assert response["statusCode"] == 204 and response["body"] == ""
    assert count(discord_deps, discord_deps.settings.events_table) == 0


def test_an_authorizing_user_is_noted_and_the_naive_timestamp_is_utc(clock):
    payload = jsonc("discord/webhook_event.APPLICATION_AUTHORIZED.published.jsonc")
    payload["event"]["data"]["user"] = {"id": "80351110224678912", "username": "nelly", "global_name": "Nelly"}
    outcome = discord.classify(payload, clock.now)
    assert outcome.code == "identity" and outcome.account.key == "discord:80351110224678912"
    assert "2024-10-18T14:42:53.064834+00:00" in outcome.reason
    assert discord.event_time("2024-10-18T14:42:53.064834", clock.now) == datetime(
        2024, 10, 18, 14, 42, 53, 64834, tzinfo=UTC
    )


def test_an_autocomplete_interaction_gets_an_empty_choice_list():
    assert discord.interaction_reply({"type": 4}) == {"type": 8, "data": {"choices": []}}


def test_a_bot_interaction_notes_no_account(clock):
    outcome = discord.classify({"type": 2, "token": "t", "user": {"id": "1", "bot": True}}, clock.now)
    assert outcome.code == "bot" and outcome.account is None
