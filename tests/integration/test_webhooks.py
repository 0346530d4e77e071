"""Webhook ingest against a real DynamoDB endpoint (moto server): every bad input, every path."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from engagement.handlers import discourse_webhook, github_webhook, ingest
from tests.conftest import (
    discourse_headers,
    github_headers,
    github_push,
    http_api_event,
    response_json,
    rest_event,
    sample,
)

PR = {
    "action": "opened",
    "number": 7,
    "pull_request": {
        "id": 555,
        "number": 7,
        "title": "Add retries",
        "created_at": "2026-11-30T12:00:00Z",
        "user": {"login": "octo-ana", "id": 901, "type": "User"},
        "body": None,
    },
    "repository": {"id": 1, "full_name": "acme/sdk"},
    "sender": {"login": "octo-ana", "id": 901, "type": "User"},
}


def body_of(payload) -> bytes:
    return json.dumps(payload).encode()


def post_github(deps, body: bytes | None, headers: dict[str, str], **kwargs):
    return ingest.handle(github_webhook.PLATFORM, rest_event(body, headers, **kwargs), deps)


def table_counts(deps) -> dict[str, int]:
    client, settings = deps.store.client, deps.settings
    names = [settings.members_table, settings.events_table, settings.identities_table, settings.raw_table]
    return {name: client.scan(TableName=name, Select="COUNT")["Count"] for name in names}


def test_signed_pull_request_is_stored_and_scored(deps):
    body = body_of(PR)
    response = post_github(deps, body, github_headers("pull_request", body))
    assert response["statusCode"] == 202
    answer = response_json(response)
    assert answer["status"] == "stored" and answer["action"] == "submit_pr"
    # 20 points, 90-day half-life, one day old at the fixed clock (2026-12-01T12:00Z): 20 * 2**(-1/90).
    assert answer["score"] == pytest.approx(20 * 2 ** (-1 / 90), abs=1e-4)
    assert answer["tier"] == "Casual"
    event = deps.store.get_event("github:pr:555:opened")
    assert event["member_id"] == answer["member_id"] and event["action"] == "submit_pr"
    assert event["occurred_at"] == "2026-11-30T12:00:00Z" or event["occurred_at"].startswith("2026-11-30T12:00:00")
    assert deps.store.get_raw("github:pr:555:opened") == body


def test_redelivery_is_counted_once_and_changes_nothing(deps):
    body = body_of(PR)
    headers = github_headers("pull_request", body, delivery="d-1")
    assert post_github(deps, body, headers)["statusCode"] == 202
    before = table_counts(deps)
    member_before = deps.store.get_member(
        response_json(post_github(deps, body, headers)).get("member_id", "")
        or next(deps.store.scan_members())["member_id"]
    )
    again = post_github(deps, body, headers)
    assert again["statusCode"] == 200 and response_json(again)["status"] == "duplicate"
    assert table_counts(deps) == before
    assert deps.store.get_member(member_before["member_id"]) == member_before


def test_the_same_pull_request_through_a_second_hook_counts_once(deps):
    # A repository hook and an organization hook deliver one event under two delivery ids.
    body = body_of(PR)
    assert post_github(deps, body, github_headers("pull_request", body, delivery="repo-hook"))["statusCode"] == 202
    second = post_github(deps, body, github_headers("pull_request", body, delivery="org-hook"))
    assert response_json(second)["status"] == "duplicate"


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda h: h.pop("X-Hub-Signature-256"), 401, "missing_signature"),
        (lambda h: h.update({"X-Hub-Signature-256": "sha256=" + "0" * 64}), 401, "bad_signature"),
        (lambda h: h.update({"X-Hub-Signature-256": "garbage"}), 401, "bad_signature"),
        (lambda h: h.pop("X-GitHub-Event"), 400, "missing_header"),
        (lambda h: h.pop("X-GitHub-Delivery"), 400, "missing_header"),
        (lambda h: h.update({"Content-Type": "text/plain"}), 415, "unsupported_media_type"),
        (lambda h: h.pop("Content-Type"), 415, "unsupported_media_type"),
    ],
)
def test_bad_headers_are_refused_and_store_nothing(deps, mutate, status, code):
    body = body_of(PR)
    headers = github_headers("pull_request", body)
    mutate(headers)
    response = post_github(deps, body, headers)
    assert response["statusCode"] == status
    answer = response_json(response)
    assert answer["error"] == code and answer["message"]
    assert sum(table_counts(deps).values()) == 0


def test_signature_by_another_secret_is_refused(deps):
    body = body_of(PR)
    response = post_github(deps, body, github_headers("pull_request", body, secret="not-the-secret"))
    assert response["statusCode"] == 401


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_body"),
        (b"[1, 2]", "malformed_body"),
        (b"", "empty_body"),
        (b"   ", "empty_body"),
        (b"\xff\xfe", "malformed_body"),
    ],
)
def test_malformed_bodies_are_400(deps, body, code):
    headers = github_headers("pull_request", body)
    event = rest_event(body, headers, base64_body=True)  # base64 so that non-UTF-8 bytes survive
    response = ingest.handle(github_webhook.PLATFORM, event, deps)
    assert response["statusCode"] == 400
    assert response_json(response)["error"] == code
    assert sum(table_counts(deps).values()) == 0


def test_null_body_is_400_when_signed_and_401_when_not(deps):
    signed = github_headers("pull_request", b"")
    assert post_github(deps, None, signed)["statusCode"] == 400
    unsigned = {k: v for k, v in signed.items() if k != "X-Hub-Signature-256"}
    assert post_github(deps, None, unsigned)["statusCode"] == 401


def test_invalid_base64_is_400(deps):
    event = rest_event(b"{}", github_headers("ping", b"{}"))
    event["body"], event["isBase64Encoded"] = "@@not base64@@", True
    response = ingest.handle(github_webhook.PLATFORM, event, deps)
    assert response["statusCode"] == 400 and response_json(response)["error"] == "invalid_body"


def test_oversized_body_is_413_before_anything_else(deps, monkeypatch):
    deps.settings = type(deps.settings)(**{**deps.settings.__dict__, "max_body_bytes": 1000})
    body = body_of({**PR, "padding": "x" * 2000})
    response = post_github(deps, body, {})  # no signature either: size is checked first
    assert response["statusCode"] == 413
    assert "limit is 1000" in response_json(response)["message"]


def test_base64_body_is_verified_after_decoding(deps):
    body = body_of(PR)
    response = post_github(deps, body, github_headers("pull_request", body), base64_body=True)
    assert response["statusCode"] == 202


def test_http_api_v2_event_with_lower_case_headers(deps):
    body = body_of(PR)
    event = http_api_event(body, github_headers("pull_request", body))
    assert all(name == name.lower() for name in event["headers"])
    response = ingest.handle(github_webhook.PLATFORM, event, deps)
    assert response["statusCode"] == 202


def test_form_encoded_delivery_is_verified_on_the_form_bytes(deps):
    body = b"payload=" + urllib.parse.quote_plus(json.dumps(PR)).encode()
    headers = github_headers("pull_request", body, content_type="application/x-www-form-urlencoded")
    response = post_github(deps, body, headers)
    assert response["statusCode"] == 202
    assert response_json(response)["action"] == "submit_pr"


def test_published_form_encoded_ping_is_accepted(deps):
    body = sample("github/ping.form-urlencoded.CONSTRUCTED.txt").read_bytes()
    deps.secret = lambda name: "It's a Secret to Everybody"
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Hub-Signature-256": "sha256=937421c54ae01a0974e52619728a1802fb50d93375a329ccb3a3d5004669d363",
    }
    response = post_github(deps, body, headers)
    assert response["statusCode"] == 200
    assert response_json(response) == {
        "status": "ignored",
        "code": "ping",
        "reason": "ping: the webhook is configured and reaches us",
    }


def test_form_without_payload_field_is_400(deps):
    body = b"other=1"
    headers = github_headers("pull_request", body, content_type="application/x-www-form-urlencoded")
    assert post_github(deps, body, headers)["statusCode"] == 400


@pytest.mark.parametrize(
    ("user", "words"),
    [
        ({"login": "dependabot[bot]", "id": 49699333, "type": "Bot"}, "bot account"),
        ({"login": "ghost", "id": 10137, "type": "User"}, "deleted"),
        (None, "no user"),
    ],
)
def test_bots_and_deleted_users_are_ignored_and_store_nothing(deps, user, words):
    payload = {**PR, "sender": user, "pull_request": {**PR["pull_request"], "user": user}}
    body = body_of(payload)
    response = post_github(deps, body, github_headers("pull_request", body))
    assert response["statusCode"] == 200
    answer = response_json(response)
    assert answer["status"] == "ignored" and words in answer["reason"]
    assert sum(table_counts(deps).values()) == 0


def test_missing_secret_is_our_fault_and_safe_to_retry(deps):
    deps.secret = lambda name: None
    body = body_of(PR)
    response = post_github(deps, body, github_headers("pull_request", body))
    assert response["statusCode"] == 500
    assert "not configured" in response_json(response)["message"]
    assert sum(table_counts(deps).values()) == 0


def test_large_push_and_huge_comment_fit_dynamodb(deps):
    # A push with 600 commits and an issue comment with a 5 MB body.
    commits = [
        {
            "id": f"{i:040x}",
            "message": "m" * 200,
            "timestamp": "2026-11-30T10:00:00Z",
            "author": {"name": "Ana", "email": "ana@example.com"},
        }
        for i in range(600)
    ]
    push = {
        "ref": "refs/heads/main",
        "after": "f" * 40,
        "commits": commits,
        "head_commit": commits[-1],
        "repository": {"id": 1, "full_name": "acme/sdk"},
        "pusher": {"name": "octo-ana", "email": "ana@example.com"},
        "sender": {"login": "octo-ana", "id": 901, "type": "User"},
    }
    body = body_of(push)
    response = post_github(deps, body, github_headers("push", body, delivery="big-push"))
    assert response["statusCode"] == 202
    event = deps.store.get_event("github:delivery:big-push")
    assert event["metadata"]["commit_count"] == 600 and len(event["metadata"]["commits"]) == 20
    assert deps.store.get_raw("github:delivery:big-push") == body

    import os

    text = os.urandom(2_500_000).hex()  # 5,000,000 characters that do not compress
    comment = {
        "action": "created",
        "issue": {"id": 3, "number": 3, "user": {"login": "bob", "id": 2, "type": "User"}},
        "comment": {
            "id": 44,
            "body": text,
            "created_at": "2026-11-30T11:00:00Z",
            "user": {"login": "octo-ana", "id": 901, "type": "User"},
        },
        "repository": {"id": 1, "full_name": "acme/sdk"},
    }
    body = body_of(comment)
    assert len(body) > 5_000_000
    response = post_github(deps, body, github_headers("issue_comment", body))
    assert response["statusCode"] == 202
    raw_items = deps.store.client.query(
        TableName=deps.settings.raw_table,
        KeyConditionExpression="event_id = :e",
        ExpressionAttributeValues={":e": {"S": "github:issue_comment:44"}},
    )["Items"]
    assert len(raw_items) > 1
    assert all(len(item["data"]["B"]) <= 350_000 for item in raw_items)
    assert deps.store.get_raw("github:issue_comment:44") == body


def test_lambda_handler_entry_point_with_environment(stack, context, monkeypatch):
    # The deployed entry point, configured only by environment variables.
    monkeypatch.setattr(github_webhook, "_deps", None)
    body = body_of(PR)
    response = github_webhook.lambda_handler(rest_event(body, github_headers("pull_request", body)), context)
    assert response["statusCode"] == 202


# Discourse ---------------------------------------------------------------------------------


def post_discourse(deps, body: bytes, headers: dict[str, str]):
    return ingest.handle(discourse_webhook.PLATFORM, rest_event(body, headers, path="/webhooks/discourse"), deps)


def test_discourse_retry_with_a_new_event_id_is_a_duplicate(deps):
    body = sample("discourse/post_created.wp-discourse-fixture.json").read_bytes()
    first = post_discourse(deps, body, discourse_headers("post_created", "post", body, event_id=101))
    assert first["statusCode"] == 202
    retry = post_discourse(deps, body, discourse_headers("post_created", "post", body, event_id=102))
    assert retry["statusCode"] == 200 and response_json(retry)["status"] == "duplicate"


def test_discourse_ping_vector_is_accepted(deps):
    body = sample("discourse/ping.json").read_bytes().strip()
    deps.secret = lambda name: "my_lovely_secret_for_web_hook"
    headers = {
        "Content-Type": "application/json",
        "X-Discourse-Event": "ping",
        "X-Discourse-Event-Type": "ping",
        "X-Discourse-Event-Id": "1",
        "X-Discourse-Event-Signature": "sha256=162f107f6b5022353274eb1a7197885cfd35744d8d08e5bcea025d309386b7d6",
    }
    response = post_discourse(deps, body, headers)
    assert response["statusCode"] == 200 and response_json(response)["code"] == "ping"


def test_discourse_without_instance_header_is_400(deps):
    body = body_of({"post": {"id": 1}})
    headers = discourse_headers("post_created", "post", body)
    headers.pop("X-Discourse-Instance")
    response = post_discourse(deps, body, headers)
    assert response["statusCode"] == 400 and "X-Discourse-Instance" in response_json(response)["message"]


def test_discourse_wrong_signature_is_401(deps):
    body = body_of({"ping": "OK"})
    headers = discourse_headers("ping", "ping", body, secret="wrong")
    assert post_discourse(deps, body, headers)["statusCode"] == 401


def test_discourse_email_links_accounts_across_platforms(deps):
    # A GitHub push with the pusher's address, then the Discourse account with the same address
    # (mixed case), then a reply on Discourse: all one member.
    push = github_push("octo-ana", 901, "ana@example.com")
    body = body_of(push)
    gh = response_json(post_github(deps, body, github_headers("push", body)))
    user = {"user": {"id": 31, "username": "ana", "email": " Ana@Example.com", "name": "Ana"}}
    body = body_of(user)
    linked = response_json(post_discourse(deps, body, discourse_headers("user_created", "user", body)))
    assert linked["status"] == "ignored" and linked["member_id"] == gh["member_id"]
    reply = {
        "post": {
            "id": 5,
            "user_id": 31,
            "username": "ana",
            "post_number": 2,
            "post_type": 1,
            "topic_id": 9,
            "created_at": "2026-11-30T09:00:00Z",
        }
    }
    body = body_of(reply)
    stored = response_json(post_discourse(deps, body, discourse_headers("post_created", "post", body)))
    assert stored["member_id"] == gh["member_id"]
    member = deps.store.get_member(gh["member_id"])
    assert member["accounts"] == {"github:901", "discourse:forum.example.com/31"}
    assert member["email"] == "ana@example.com"


def test_reply_in_a_known_topic_uses_the_recorded_author(deps):
    topic = {
        "topic": {
            "id": 9,
            "title": "Q",
            "created_at": "2026-11-29T09:00:00Z",
            "archetype": "regular",
            "created_by": {"id": 31, "username": "ana"},
        }
    }
    body = body_of(topic)
    assert (
        response_json(post_discourse(deps, body, discourse_headers("topic_created", "topic", body)))["action"] == "ask"
    )
    own = {"post": {"id": 6, "user_id": 31, "username": "ana", "post_number": 2, "post_type": 1, "topic_id": 9}}
    body = body_of(own)
    assert (
        response_json(post_discourse(deps, body, discourse_headers("post_created", "post", body)))["status"]
        == "ignored"
    )
    other = {"post": {"id": 7, "user_id": 32, "username": "bo", "post_number": 3, "post_type": 1, "topic_id": 9}}
    body = body_of(other)
    assert (
        response_json(post_discourse(deps, body, discourse_headers("post_created", "post", body)))["action"] == "answer"
    )


def test_a_new_account_from_a_user_event_is_a_lurker(deps):
    body = body_of({"user": {"id": 40, "username": "quiet", "name": " Quinn Iverson ", "email": "quiet@example.com"}})
    answer = response_json(post_discourse(deps, body, discourse_headers("user_created", "user", body)))
    assert answer["status"] == "ignored" and answer["code"] == "identity"
    member = deps.store.get_member(answer["member_id"])
    assert (member["tier"], float(member["score"]), member["event_count"]) == ("Lurker", 0.0, 0)
    assert member["email"] == "quiet@example.com"
    assert member["display_name"] == "Quinn Iverson"


class ConflictingClient:
    """The real client, except that the first `conflicts` transactions are cancelled as DynamoDB
    cancels concurrent transactions on one item (TransactionConflict)."""

    def __init__(self, client, conflicts: int) -> None:
        self.client, self.conflicts, self.transactions = client, conflicts, 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def transact_write_items(self, **kwargs):
        from botocore.exceptions import ClientError

        self.transactions += 1
        if self.conflicts:
            self.conflicts -= 1
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                    "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
                },
                "TransactWriteItems",
            )
        return self.client.transact_write_items(**kwargs)


def test_transaction_conflicts_are_retried_and_stored_once(deps):
    import stamina

    stamina.set_testing(True, attempts=6)
    try:
        conflicting = ConflictingClient(deps.store.client, conflicts=2)
        deps.store.client = conflicting
        body = body_of(PR)
        response = post_github(deps, body, github_headers("pull_request", body))
        assert response["statusCode"] == 202
        # member creation (1) + the event's transaction: 2 conflicts then success (3)
        assert conflicting.transactions == 4
        (member,) = list(deps.store.scan_members())
        assert member["event_count"] == 1
    finally:
        stamina.set_testing(False)


@pytest.mark.parametrize(
    "payload",
    [{"action": "opened", "pull_request": "not an object"}, {"action": "created", "comment": [1], "issue": 3}],
)
def test_json_of_the_wrong_shape_is_400(deps, payload):
    body = body_of(payload)
    event = "pull_request" if "pull_request" in payload else "issue_comment"
    response = post_github(deps, body, github_headers(event, body))
    assert response["statusCode"] == 400 and response_json(response)["error"] == "unexpected_shape"
    assert sum(table_counts(deps).values()) == 0


def test_overlong_delivery_header_is_400(deps):
    body = body_of(PR)
    response = post_github(deps, body, github_headers("pull_request", body, delivery="d" * 5000))
    assert response["statusCode"] == 400 and response_json(response)["error"] == "bad_header"


@pytest.mark.parametrize(
    ("event", "payload", "instance", "words"),
    [
        (
            "post_created",
            {"post": {"user_id": 5, "username": "x", "post_number": 2, "topic_id": 9}},
            "https://forum.example.com",
            "post.id",
        ),
        (
            "topic_created",
            {"topic": {"created_by": {"id": 5, "username": "x"}}},
            "https://forum.example.com",
            "topic id",
        ),
        ("post_created", {"post": {"id": 1, "user_id": 5, "post_number": 2, "topic_id": 9}}, "http://[::1", "host"),
    ],
)
def test_discourse_payload_without_ids_is_400(deps, event, payload, instance, words):
    body = body_of(payload)
    headers = discourse_headers(event, event.split("_")[0], body, instance=instance)
    response = post_discourse(deps, body, headers)
    assert response["statusCode"] == 400, response
    assert words in response_json(response)["message"]
    assert sum(table_counts(deps).values()) == 0
