"""POST /webhooks/slack against a real DynamoDB endpoint (moto server)."""

from __future__ import annotations

import json

import httpx
import pytest

from engagement.adapters.slack_directory import SlackDirectory
from engagement.domain.signature_schemes import slack_signature
from engagement.handlers import ingest, slack_webhook
from tests.conftest import SECRET, load_sample, response_json, rest_event

TEAM, CHANNEL = "T0AURORA", "C0GENERAL"


@pytest.fixture
def slack_deps(deps, monkeypatch):
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    return deps


def headers_for(body: bytes, clock, retry: int | None = None, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(clock.now.timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(secret, timestamp, body),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    if retry is not None:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    return headers


def post(deps, clock, payload, retry=None, raw: bytes | None = None, headers=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    event = rest_event(body, headers or headers_for(body, clock, retry), path="/webhooks/slack")
    return ingest.handle(slack_webhook.PLATFORM, event, deps)


def message(event_id: str, user: str = "U0PRIYA", ts: str = "1796040000.000100", **extra) -> dict:
    return {
        "token": "unused",
        "team_id": TEAM,
        "api_app_id": "A0APP",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1796040000,
        "event": {
            "type": "message",
            "user": user,
            "text": "hello",
            "ts": ts,
            "channel": CHANNEL,
            "channel_type": "channel",
            "event_ts": ts,
            **extra,
        },
    }


def counts(deps) -> dict[str, int]:
    client, s = deps.store.client, deps.settings
    names = [s.members_table, s.events_table, s.identities_table, s.raw_table]
    return {n: client.scan(TableName=n, Select="COUNT")["Count"] for n in names}


def test_url_verification_is_answered_with_the_challenge(slack_deps, clock):
    payload = load_sample("slack/url_verification.python-slack-events-api.json")
    response = post(slack_deps, clock, payload)
    assert response["statusCode"] == 200
    assert response_json(response) == {"challenge": payload["challenge"]}
    assert sum(counts(slack_deps).values()) == 0


def test_url_verification_with_a_bad_signature_is_refused(slack_deps, clock):
    body = json.dumps({"type": "url_verification", "challenge": "abc", "token": "x"}).encode()
    response = post(slack_deps, clock, None, raw=body, headers=headers_for(body, clock, secret="wrong"))
    assert response["statusCode"] == 401 and response_json(response)["error"] == "bad_signature"


def test_a_message_delivered_three_times_yields_one_event(slack_deps, clock):
    first = post(slack_deps, clock, message("Ev001"))
    assert first["statusCode"] == 202 and response_json(first)["action"] == "participate"
    retry = post(slack_deps, clock, message("Ev001"), retry=1)  # Slack's retry: same event id, retry headers
    again = post(slack_deps, clock, message("Ev002"))  # resent under a new event id, no retry headers
    third = post(slack_deps, clock, message("Ev003"))
    for response in (retry, again, third):
        assert response["statusCode"] == 200  # 2xx: Slack stops retrying
        assert response_json(response)["status"] == "duplicate"
    assert counts(slack_deps)[slack_deps.settings.events_table] == 1
    member = next(slack_deps.store.scan_members())
    assert member["event_count"] == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"bot_id": "B0BOT"},
        {"bot_profile": {"id": "B0BOT", "name": "helper"}},
        {"subtype": "bot_message", "bot_id": "B0BOT"},
    ],
)
def test_bot_messages_yield_no_event_even_with_a_user_field(slack_deps, clock, extra):
    response = post(slack_deps, clock, message("Ev010", **extra))
    assert response["statusCode"] == 200
    assert response_json(response)["code"] == "bot"
    assert counts(slack_deps)[slack_deps.settings.events_table] == 0


def test_a_real_bot_thread_reply_yields_nothing(slack_deps, clock):
    response = post(slack_deps, clock, load_sample("slack/slack-web.botMessage.json"))
    assert response_json(response)["status"] == "ignored" and response_json(response)["code"] == "bot"
    assert sum(counts(slack_deps).values()) == 0


def test_a_deleted_message_withdraws_its_points(slack_deps, clock):
    reply = message(
        "Ev020", user="U0MARCO", ts="1796040100.000200", thread_ts="1796040000.000100", parent_user_id="U0PRIYA"
    )
    stored = response_json(post(slack_deps, clock, reply))
    assert stored["action"] == "answer"
    member_id = stored["member_id"]
    assert slack_deps.store.get_member(member_id)["score"] > 9  # 10 points, a few days old

    deletion = {
        **message("Ev021"),
        "event": {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": CHANNEL,
            "deleted_ts": "1796040100.000200",
            "ts": "1796040200.000300",
            "event_ts": "1796040200.000300",
            "previous_message": {"type": "message", "user": "U0MARCO", "ts": "1796040100.000200"},
            "channel_type": "channel",
        },
    }
    response = post(slack_deps, clock, deletion)
    answer = response_json(response)
    assert response["statusCode"] == 200
    assert answer["status"] == "withdrawn" and answer["result"] == "withdrawn" and answer["points_withdrawn"] == 10
    assert answer["score"] == pytest.approx(0, abs=1e-6) and answer["tier"] == "Lurker"
    event = slack_deps.store.get_event("slack:T0AURORA:msg:C0GENERAL:1796040100.000200")
    assert event["withdrawn_at"] == clock.now.isoformat()
    member = slack_deps.store.get_member(member_id)
    assert float(member["score"]) == pytest.approx(0, abs=1e-6)
    assert member["event_count"] == 0

    # Withdrawing twice changes nothing; the original redelivered stays a duplicate.
    before = slack_deps.store.get_member(member_id)
    assert response_json(post(slack_deps, clock, deletion, retry=1))["result"] == "already_withdrawn"
    assert response_json(post(slack_deps, clock, reply))["status"] == "duplicate"
    assert slack_deps.store.get_member(member_id) == before


def test_a_deletion_that_arrives_first_keeps_the_late_message_from_scoring(slack_deps, clock):
    deletion = load_sample("slack/slack-web.message_deleted.json")
    answer = response_json(post(slack_deps, clock, deletion))
    assert answer["status"] == "withdrawn" and answer["result"] == "tombstone"
    late = post(slack_deps, clock, load_sample("slack/slack-web.messageExample.json"))
    assert response_json(late)["status"] == "duplicate"
    assert counts(slack_deps)[slack_deps.settings.members_table] == 0


def test_an_edit_adds_no_points(slack_deps, clock):
    post(slack_deps, clock, load_sample("slack/slack-web.messageExample.json"))
    before = counts(slack_deps)
    response = post(slack_deps, clock, load_sample("slack/slack-web.messageChange.json"))
    assert response_json(response)["code"] == "no_points"
    assert counts(slack_deps) == before


def test_a_stale_request_is_refused_and_stores_nothing(slack_deps, clock):
    body = json.dumps(message("Ev030")).encode()
    headers = headers_for(body, clock)
    clock.now = clock.now.__class__.fromtimestamp(int(headers["X-Slack-Request-Timestamp"]) + 301, clock.now.tzinfo)
    response = post(slack_deps, clock, None, raw=body, headers=headers)
    assert response["statusCode"] == 401 and response_json(response)["error"] == "stale_timestamp"
    assert sum(counts(slack_deps).values()) == 0


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda h: h.pop("X-Slack-Signature"), 401, "missing_signature"),
        (lambda h: h.pop("X-Slack-Request-Timestamp"), 401, "missing_timestamp"),
        (lambda h: h.update({"Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type"),
    ],
)
def test_bad_headers_are_refused(slack_deps, clock, mutate, status, code):
    body = json.dumps(message("Ev040")).encode()
    headers = headers_for(body, clock)
    mutate(headers)
    response = post(slack_deps, clock, None, raw=body, headers=headers)
    assert (response["statusCode"], response_json(response)["error"]) == (status, code)
    assert sum(counts(slack_deps).values()) == 0


def test_a_signed_body_that_is_not_json_is_a_400(slack_deps, clock):
    body = b"{not json"
    response = post(slack_deps, clock, None, raw=body, headers=headers_for(body, clock))
    assert response["statusCode"] == 400 and response_json(response)["error"] == "malformed_body"


def test_the_masked_api_gateway_sample_is_refused_for_its_empty_body(slack_deps, clock):
    event = load_sample("slack/java-slack-sdk.ApiGatewayRequest.masked.json")
    clock.now = clock.now.__class__.fromtimestamp(1531420618, clock.now.tzinfo)
    response = ingest.handle(slack_webhook.PLATFORM, event, slack_deps)
    # Its headers carry the published vector's signature, but the masked body is empty: no match.
    assert response["statusCode"] == 401 and response_json(response)["error"] == "bad_signature"


def users_info_transport(calls: list[str], status: int = 200, retry_after: str | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params["user"])
        assert request.headers["Authorization"] == "Bearer xoxb-test"
        if status == 429:
            return httpx.Response(
                429, headers={"Retry-After": retry_after or "30"}, json={"ok": False, "error": "ratelimited"}
            )
        return httpx.Response(
            200,
            json={
                "ok": True,
                "user": {
                    "id": request.url.params["user"],
                    "team_id": TEAM,
                    "name": "priya",
                    "deleted": False,
                    "is_bot": False,
                    "profile": {"real_name": "Priya Raman", "email": "Priya.Raman@example.com"},
                },
            },
        )

    return httpx.MockTransport(handler)


def test_the_email_comes_from_users_info_once_and_links_the_member(slack_deps, clock):
    calls: list[str] = []
    slack_deps.clients[slack_webhook.DIRECTORY] = SlackDirectory(
        "xoxb-test", client=httpx.Client(transport=users_info_transport(calls))
    )
    first = response_json(post(slack_deps, clock, message("Ev050", ts="1796040000.000100")))
    second = response_json(post(slack_deps, clock, message("Ev051", ts="1796040001.000100")))
    post(slack_deps, clock, message("Ev050", ts="1796040000.000100"), retry=1)  # a redelivery: no lookup
    assert calls == ["U0PRIYA"]  # cached after the first lookup
    member = slack_deps.store.get_member(first["member_id"])
    assert member["email"] == "priya.raman@example.com" and first["member_id"] == second["member_id"]


def test_a_rate_limited_lookup_stores_the_event_and_waits_out_retry_after(slack_deps, clock):
    calls: list[str] = []
    now = [1000.0]
    slack_deps.clients[slack_webhook.DIRECTORY] = SlackDirectory(
        "xoxb-test", client=httpx.Client(transport=users_info_transport(calls, 429, "20")), monotonic=lambda: now[0]
    )
    stored = response_json(post(slack_deps, clock, message("Ev060", ts="1796040000.000100")))
    assert stored["status"] == "stored"
    assert "email" not in slack_deps.store.get_member(stored["member_id"])
    post(slack_deps, clock, message("Ev061", user="U0MARCO", ts="1796040002.000100"))
    assert calls == ["U0PRIYA"]  # within Retry-After: no second call
    now[0] += 21
    post(slack_deps, clock, message("Ev062", user="U0LENA", ts="1796040003.000100"))
    assert calls == ["U0PRIYA", "U0LENA"]


def test_withdrawing_one_of_two_messages_leaves_exactly_the_others_points(slack_deps, clock):
    # One day before the fixed clock (2026-12-01T12:00Z): a top-level message (2 points, 30-day half-life)
    # and an answer in somebody else's thread (10 points, 30-day half-life); then the answer is deleted.
    day_before = str(int(clock.now.timestamp()) - 86_400)
    post(slack_deps, clock, message("Ev070", ts=f"{day_before}.000100"))
    reply = message("Ev071", ts=f"{day_before}.000200", thread_ts="1796000000.000100", parent_user_id="U0MARCO")
    both = response_json(post(slack_deps, clock, reply))
    assert both["score"] == pytest.approx(12 * 2 ** (-1 / 30), abs=1e-4)
    deletion = {
        **message("Ev072"),
        "event": {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": CHANNEL,
            "deleted_ts": f"{day_before}.000200",
            "ts": f"{day_before}.000900",
            "channel_type": "channel",
        },
    }
    answer = response_json(post(slack_deps, clock, deletion))
    assert answer["score"] == pytest.approx(2 * 2 ** (-1 / 30), abs=1e-4)
    assert slack_deps.store.get_member(both["member_id"])["event_count"] == 1


def test_an_http_api_v2_event_with_a_base64_body_is_verified_on_the_decoded_bytes(slack_deps, clock):
    from tests.conftest import http_api_event

    body = json.dumps(message("Ev080")).encode()
    event = http_api_event(body, headers_for(body, clock), path="/webhooks/slack", base64_body=True)
    response = ingest.handle(slack_webhook.PLATFORM, event, slack_deps)
    assert response["statusCode"] == 202 and response_json(response)["action"] == "participate"
