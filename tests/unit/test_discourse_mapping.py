"""Discourse deliveries: the real samples, and each signal the mapping distinguishes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engagement.domain import discourse, taxonomy
from engagement.domain.activity import Activity, Ignored
from tests.conftest import load_sample

RECEIVED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FORUM = "https://forum.example.com"


def classify(event, payload, owner=None, tax=None):
    return discourse.classify(event, FORUM, payload, tax or taxonomy.build(), RECEIVED, lambda key: owner)


def post(**fields):
    base = {
        "id": 39,
        "username": "angus",
        "user_id": 1,
        "created_at": "2021-11-10T04:13:36.854Z",
        "post_number": 2,
        "post_type": 1,
        "topic_id": 15,
        "topic_title": "A topic",
        "category_id": 5,
        "topic_archetype": "regular",
        "deleted_at": None,
        "hidden": False,
    }
    return {**base, **fields}


def test_real_post_created_sample_is_an_answer_when_the_topic_author_is_unknown():
    outcome = classify("post_created", load_sample("discourse/post_created.wp-discourse-fixture.json"))
    assert isinstance(outcome, Activity)
    # post_number 2 in topic 15 by angus (user 1); no topic_created seen for topic 15.
    assert outcome.signal == "post_created.reply.unknown_topic"
    assert outcome.action == "answer"
    assert outcome.account.key == "discourse:forum.example.com/1"
    assert outcome.event_id == "discourse:forum.example.com:post:39"
    assert outcome.occurred_at == datetime(2021, 11, 10, 4, 13, 36, 854000, tzinfo=UTC)


def test_real_user_sample_records_the_email_without_scoring():
    outcome = classify("user_updated", load_sample("discourse/user_event.wp-discourse-fixture.json"))
    assert isinstance(outcome, Ignored) and outcome.code == "identity"
    assert outcome.account.email == "angus@test.com"
    assert outcome.account.key == "discourse:forum.example.com/1"


def test_real_ping_sample_is_ignored():
    outcome = classify("ping", load_sample("discourse/ping.json"))
    assert isinstance(outcome, Ignored) and outcome.code == "ping"


def test_reply_in_another_members_topic_is_an_answer():
    outcome = classify("post_created", {"post": post()}, owner="discourse:forum.example.com/7")
    assert outcome.signal == "post_created.reply.others" and outcome.action == "answer"


def test_reply_in_own_topic_scores_nothing():
    outcome = classify("post_created", {"post": post()}, owner="discourse:forum.example.com/1")
    assert isinstance(outcome, Ignored) and outcome.code == "no_action"


def test_topic_created_is_an_ask_and_registers_its_author():
    payload = {
        "topic": {
            "id": 15,
            "title": "How?",
            "created_at": "2026-11-01T09:00:00Z",
            "archetype": "regular",
            "created_by": {"id": 7, "username": "lena"},
        }
    }
    outcome = classify("topic_created", payload)
    assert outcome.action == "ask"
    assert outcome.registers_owner == ("discourse:forum.example.com:topic:15", "discourse:forum.example.com/7")


def test_first_post_and_topic_created_share_one_key():
    topic = classify("topic_created", {"topic": {"id": 15, "created_by": {"id": 7, "username": "lena"}}})
    first = classify("post_created", {"post": post(post_number=1, user_id=7, username="lena")})
    assert topic.event_id == first.event_id == "discourse:forum.example.com:topic:15"


def test_accepted_solution_credits_the_posts_author():
    outcome = classify("accepted_solution", {"solved": post(id=80, user_id=3, username="sam")})
    assert outcome.action == "answer_accepted"
    assert outcome.account.handle == "sam"
    assert outcome.event_id == "discourse:forum.example.com:solved:80"
    assert outcome.occurred_at == RECEIVED  # the payload carries no time of acceptance


def test_like_is_a_reaction_by_the_liker():
    payload = {"like": {"post": post(id=80, user_id=3), "user": {"id": 9, "username": "kim"}}}
    outcome = classify("post_liked", payload)
    assert outcome.action == "react" and outcome.account.handle == "kim"
    assert outcome.event_id == "discourse:forum.example.com:like:80:9"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"user_id": -1, "username": "system"}, "bot"),
        ({"user_id": -2, "username": "discobot"}, "bot"),
        ({"user_id": 55, "username": "discobot"}, "bot"),
        ({"user_id": None}, "bot"),
        ({"post_type": 4}, "not_regular"),
        ({"topic_archetype": "private_message"}, "private"),
        ({"deleted_at": "2026-01-01T00:00:00Z"}, "hidden"),
    ],
)
def test_system_users_and_non_public_posts_never_score(fields, code):
    outcome = classify("post_created", {"post": post(**fields)})
    assert isinstance(outcome, Ignored) and outcome.code == code


def test_unknown_events_are_ignored_with_their_name():
    outcome = classify("post_edited", {"post": post()})
    assert isinstance(outcome, Ignored) and "post_edited" in outcome.reason


def test_instance_host_from_header():
    assert discourse.instance_host("https://Forum.Example.com/") == "forum.example.com"
    assert discourse.instance_host("forum.example.com") == "forum.example.com"
