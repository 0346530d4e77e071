"""Slack: signature v0 with its replay window, and every real payload mapped (or ignored with a reason)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from engagement.domain import slack, taxonomy
from engagement.domain.activity import Activity, Ignored, PayloadShapeError, Withdrawal
from engagement.domain.signature_schemes import SignatureRejected, check_slack, slack_signature
from tests.conftest import load_sample, sample

TAXONOMY = taxonomy.build()
LATER = datetime(2030, 1, 1, tzinfo=UTC)  # receipt time after every sample's timestamp


def vector():
    data = load_sample("slack/signature-test-vector.json")
    return data, datetime.fromtimestamp(int(data["X-Slack-Request-Timestamp"]), UTC)


def test_the_published_signature_vector_verifies():
    data, at = vector()
    body = data["raw_body"].encode()
    assert slack_signature(data["signing_secret"], data["X-Slack-Request-Timestamp"], body) == data["X-Slack-Signature"]
    check_slack(data["signing_secret"], data["X-Slack-Request-Timestamp"], data["X-Slack-Signature"], body, at)


@pytest.mark.parametrize("offset", [300, -300])
def test_the_vector_still_verifies_at_the_edge_of_the_window(offset):
    data, at = vector()
    check_slack(
        data["signing_secret"],
        data["X-Slack-Request-Timestamp"],
        data["X-Slack-Signature"],
        data["raw_body"].encode(),
        at + timedelta(seconds=offset),
    )


@pytest.mark.parametrize("offset", [301, -301])
def test_the_same_request_301_seconds_later_or_earlier_is_refused(offset):
    data, at = vector()
    with pytest.raises(SignatureRejected) as refused:
        check_slack(
            data["signing_secret"],
            data["X-Slack-Request-Timestamp"],
            data["X-Slack-Signature"],
            data["raw_body"].encode(),
            at + timedelta(seconds=offset),
        )
    assert refused.value.code == "stale_timestamp"
    assert "301 s" in refused.value.message


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d.update({"X-Slack-Signature": "v0=" + "0" * 64}), "bad_signature"),
        (lambda d: d.update({"raw_body": d["raw_body"] + "&x=1"}), "bad_signature"),
        (lambda d: d.update({"signing_secret": "another-secret"}), "bad_signature"),
        (lambda d: d.update({"X-Slack-Signature": None}), "missing_signature"),
        (lambda d: d.update({"X-Slack-Request-Timestamp": None}), "missing_timestamp"),
        (lambda d: d.update({"X-Slack-Request-Timestamp": "1531420618.5"}), "bad_timestamp"),
    ],
)
def test_tampered_vectors_are_refused(mutate, code):
    data, at = vector()
    mutate(data)
    with pytest.raises(SignatureRejected) as refused:
        check_slack(
            data["signing_secret"],
            data["X-Slack-Request-Timestamp"],
            data["X-Slack-Signature"],
            data["raw_body"].encode(),
            at,
        )
    assert refused.value.code == code


def classify(name: str):
    return slack.classify(load_sample(f"slack/{name}"), TAXONOMY, LATER)


def unmask(payload: dict) -> dict:
    """java-slack-sdk's masked samples blank every id; give them invented ones so their shape can be mapped."""
    text = json.dumps(payload)
    text = text.replace('"type": "", ', '"type": "event_callback", ', 1) if payload.get("type") == "" else text
    for field, value in [
        ("team_id", "T0MASKED"),
        ("team", "T0MASKED"),
        ("event_id", "Ev0MASKED"),
        ("user", "U0MASKED"),
        ("item_user", "U0OTHER"),
        ("channel", "C0MASKED"),
        ("ts", "1700000000.000100"),
        ("event_ts", "1700000000.000100"),
    ]:
        text = text.replace(f'"{field}": ""', f'"{field}": "{value}"')
    return json.loads(text)


# Every valid-JSON file in ../shared/samples/slack and what it must become (hand-derived from the file).
REAL = [
    ("slack-web.messageExample.json", "message.top_level", "participate"),
    ("slack-web.message_rich_text.json", "message.top_level", "participate"),
    ("reaction_added.python-slack-events-api.json", "reaction_added.others", "react"),
    ("docs.member_joined_channel.trailing-comma-removed.json", "member_joined_channel", "join"),
]


@pytest.mark.parametrize(("name", "signal", "action"), REAL)
def test_real_payloads_map_to_their_action(name, signal, action):
    outcome = classify(name)
    assert isinstance(outcome, Activity)
    assert (outcome.signal, outcome.action) == (signal, action)


def test_a_plain_message_is_keyed_by_team_channel_and_exact_ts():
    outcome = classify("slack-web.messageExample.json")
    assert outcome.event_id == "slack:T043DB835ML:msg:C043YJGBY49:1663966382.046509"
    assert outcome.account.key == "slack:U043H11ES4V"
    assert outcome.metadata["ts"] == "1663966382.046509"  # the string, never a float
    assert outcome.occurred_at == datetime(2022, 9, 23, 20, 53, 2, 46509, tzinfo=UTC)


def test_a_reaction_is_keyed_by_event_id_and_credited_to_the_reactor():
    outcome = classify("reaction_added.python-slack-events-api.json")
    assert outcome.account.user_id == "U27FFLNF4"
    # This older fixture has no event_id: the key names the reactor, reaction, message and moment instead.
    assert outcome.event_id == (
        "slack:T0JFD6M53:reaction:U27FFLNF4:grinning:D2AQCJCQ2:1477958101.000004:1477958240.864741"
    )


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("slack-web.botMessage.json", "bot"),  # has `user` too, and bot_id and bot_profile
        ("slack-web.message_subtype_bot_message.json", "bot"),
        ("docs.bot_message.trailing-comma-removed.json", "bot"),
        ("slack-web.messageChange.json", "no_points"),
        ("docs.message_changed.trailing-comma-removed.json", "no_points"),
        ("slack-web.messageIm.json", "private"),
        ("slack-web.joinChannel.json", "identity"),
        ("docs.channel_join.json", "identity"),
        ("url_verification.python-slack-events-api.json", "unsupported"),  # answered before classification
    ],
)
def test_real_payloads_that_score_nothing_say_why(name, code):
    outcome = classify(name)
    assert isinstance(outcome, Ignored)
    assert outcome.code == code and outcome.reason


def test_a_bot_thread_reply_with_a_user_field_never_scores():
    payload = load_sample("slack/slack-web.botMessage.json")
    assert payload["event"]["user"] and payload["event"]["thread_ts"] != payload["event"]["ts"]
    assert slack.classify(payload, TAXONOMY, LATER).code == "bot"
    del payload["event"]["bot_id"]  # bot_profile alone is enough
    assert slack.classify(payload, TAXONOMY, LATER).code == "bot"


def test_a_deleted_message_withdraws_the_key_of_the_message_it_deleted():
    outcome = classify("slack-web.message_deleted.json")
    assert isinstance(outcome, Withdrawal)
    original = classify("slack-web.messageExample.json")
    assert outcome.event_id == original.event_id  # the sample deletes the message of messageExample


def test_message_replied_is_a_notice_the_reply_is_counted_from_its_own_event():
    outcome = classify("docs.message_replied.trailing-comma-removed.json")
    assert isinstance(outcome, Ignored) and outcome.code == "thread_notice"


def test_a_member_joining_the_workspace_is_recorded_with_zero_points():
    payload = unmask(load_sample("slack/java-slack-sdk.TeamJoinPayload.masked.json"))
    payload["event"]["user"]["id"] = "U0NEWBIE"
    payload["event"]["user"]["profile"]["email"] = "Newbie@Example.com"
    outcome = slack.classify(payload, TAXONOMY, LATER)
    assert (outcome.signal, outcome.action) == ("team_join", "join")
    assert TAXONOMY.actions["join"].points == 0
    assert outcome.account.email == "newbie@example.com"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("java-slack-sdk.MessagePayload.masked.json", ("bot", None)),  # masked with a bot_profile
        ("java-slack-sdk.MessageBotPayload.masked.json", ("bot", None)),
        ("java-slack-sdk.MessageChangedPayload.masked.json", ("no_points", None)),
        ("java-slack-sdk.ReactionAddedPayload.masked.json", (None, "react")),
        ("java-slack-sdk.MemberJoinedChannelPayload.masked.json", (None, "join")),
        ("java-slack-sdk.MessageRepliedPayload.masked.json", ("thread_notice", None)),
    ],
)
def test_masked_schema_samples_map_once_their_ids_are_filled_in(name, expected):
    outcome = slack.classify(unmask(load_sample(f"slack/{name}")), TAXONOMY, LATER)
    code, action = expected
    if action:
        assert isinstance(outcome, Activity) and outcome.action == action
    else:
        assert isinstance(outcome, Ignored) and outcome.code == code


def test_masked_samples_with_blank_ids_are_refused_as_misshapen():
    with pytest.raises(PayloadShapeError):
        slack.classify(load_sample("slack/java-slack-sdk.ReactionAddedPayload.masked.json"), TAXONOMY, LATER)


def test_published_text_files_are_the_json_siblings_plus_trailing_commas():
    # The .published.txt files are not valid JSON (trailing commas); their .json siblings are what we map.
    with pytest.raises(ValueError):
        json.loads(sample("slack/docs.bot_message.published.txt").read_text())


def base(event: dict, event_id: str = "Ev1") -> dict:
    return {"type": "event_callback", "team_id": "T1", "event_id": event_id, "event_time": 1764590000, "event": event}


def test_thread_replies_in_own_other_and_unknown_threads():
    reply = {
        "type": "message",
        "user": "U1",
        "ts": "1764590000.000200",
        "thread_ts": "1764580000.000100",
        "channel": "C1",
        "channel_type": "channel",
    }
    assert slack.classify(base({**reply, "parent_user_id": "U2"}), TAXONOMY, LATER).action == "answer"
    own = slack.classify(base({**reply, "parent_user_id": "U1"}), TAXONOMY, LATER)
    assert isinstance(own, Ignored) and own.code == "not_scored"
    unknown = slack.classify(base(reply), TAXONOMY, LATER)
    assert unknown.signal == "message.reply.unknown_thread" and unknown.action == "answer"
    # With a subtype too: thread_broadcast is a reply that is also shown in the channel.
    broadcast = slack.classify(base({**reply, "parent_user_id": "U2", "subtype": "thread_broadcast"}), TAXONOMY, LATER)
    assert broadcast.action == "answer"


def test_a_parent_message_whose_thread_ts_equals_its_ts_is_top_level():
    parent = {
        "type": "message",
        "user": "U1",
        "ts": "1764580000.000100",
        "thread_ts": "1764580000.000100",
        "channel": "C1",
        "channel_type": "channel",
    }
    assert slack.classify(base(parent), TAXONOMY, LATER).signal == "message.top_level"


def test_a_reaction_to_ones_own_message_scores_nothing():
    event = {
        "type": "reaction_added",
        "user": "U1",
        "item_user": "U1",
        "reaction": "tada",
        "item": {"type": "message", "channel": "C1", "ts": "1764580000.000100"},
        "event_ts": "1764590000.000300",
    }
    outcome = slack.classify(base(event), TAXONOMY, LATER)
    assert isinstance(outcome, Ignored) and outcome.code == "not_scored"


def test_slackbot_is_a_configured_bot():
    message = {"type": "message", "user": "USLACKBOT", "ts": "1764580000.000100", "channel": "C1"}
    assert slack.classify(base(message), TAXONOMY, LATER).code == "bot"


def test_ts_is_turned_into_time_exactly():
    moment = slack.ts_moment("1764580000.000001", LATER)
    assert moment == datetime(2025, 12, 1, 9, 6, 40, 1, tzinfo=UTC)
