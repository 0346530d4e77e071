"""Discord, Circle and Meetup records to actions: the shared samples and the documented rules."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import httpx
import pytest

from engagement.adapters.polling import retry_after_seconds
from engagement.domain import circle, meetup, taxonomy
from engagement.domain import discord_messages as discord
from engagement.domain.activity import Activity, Ignored, PayloadShapeError
from tests.conftest import load_sample

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TAXONOMY = taxonomy.build()


def person(user_id: str, name: str, **extra) -> dict:
    return {"id": user_id, "username": name, "global_name": name.title(), "discriminator": "0", **extra}


def message(message_id: str, author: dict, **extra) -> dict:
    return {
        "id": message_id,
        "channel_id": "900000000000000001",
        "type": 0,
        "content": "hello",
        "timestamp": "2026-11-30T10:00:00.000000+00:00",
        "author": author,
        **extra,
    }


# Discord -----------------------------------------------------------------------------------------


def test_the_published_example_message_is_participation():
    sample = load_sample("discord/message_object.example.json")
    outcome = discord.classify_message(sample, TAXONOMY, NOW)
    assert isinstance(outcome, Activity)
    assert (outcome.signal, outcome.action) == ("message.post", "participate")
    assert outcome.event_id == "discord:message:334385199974967042"
    assert outcome.account.key == "discord:53908099506183680"
    assert outcome.account.handle == "Mason"
    assert outcome.occurred_at == datetime(2017, 7, 11, 17, 27, 7, 299000, tzinfo=UTC)


def test_the_message_inside_a_published_message_command_interaction_maps_too():
    sample = load_sample("discord/interaction.message_command.json")
    resolved = sample["data"]["resolved"]["messages"]["867793854505943041"]
    outcome = discord.classify_message(resolved, TAXONOMY, NOW)
    assert isinstance(outcome, Activity)
    assert (outcome.action, outcome.account.user_id) == ("participate", "167348773423415296")
    assert outcome.occurred_at == datetime(2021, 7, 22, 15, 42, 57, 744000, tzinfo=UTC)


def test_a_reaction_in_the_published_example_is_read_as_its_emoji():
    sample = load_sample("discord/message_object.example.json")
    emoji = discord.emoji_key(sample["reactions"][0]["emoji"])
    assert emoji == "🔥"
    reactor = person("70000000000000001", "river")
    outcome = discord.classify_reaction(sample, emoji, reactor, TAXONOMY, NOW)
    assert isinstance(outcome, Activity)
    assert (outcome.signal, outcome.action) == ("message.reaction.others", "react")
    assert outcome.event_id == "discord:reaction:334385199974967042:🔥:70000000000000001"
    assert outcome.occurred_at == NOW  # REST gives reactions no time: dated when read


def test_a_reaction_on_ones_own_message_scores_nothing():
    sample = load_sample("discord/message_object.example.json")
    outcome = discord.classify_reaction(sample, "🔥", sample["author"], TAXONOMY, NOW)
    assert isinstance(outcome, Ignored)


def test_a_custom_emoji_is_keyed_name_colon_id():
    assert discord.emoji_key({"id": "41771983429993937", "name": "LUL"}) == "LUL:41771983429993937"


def test_a_reply_to_another_member_is_an_answer_and_to_oneself_participation():
    maple, river = person("11", "maple"), person("22", "river")
    parent = message("100", maple)
    reply = message("101", river, type=19, message_reference={"message_id": "100"}, referenced_message=parent)
    own = message("102", maple, type=19, message_reference={"message_id": "100"}, referenced_message=parent)
    assert discord.classify_message(reply, TAXONOMY, NOW).action == "answer"
    assert discord.classify_message(own, TAXONOMY, NOW).signal == "message.reply.own"
    assert discord.classify_message(own, TAXONOMY, NOW).action == "participate"


def test_a_reply_whose_parent_is_gone_or_a_bot_is_participation():
    river = person("22", "river")
    gone = message("101", river, type=19, message_reference={"message_id": "100"}, referenced_message=None)
    bot_parent = message("100", person("33", "helper", bot=True))
    to_bot = message("102", river, type=19, message_reference={"message_id": "100"}, referenced_message=bot_parent)
    assert discord.classify_message(gone, TAXONOMY, NOW).signal == "message.reply.unknown"
    assert discord.classify_message(to_bot, TAXONOMY, NOW).signal == "message.reply.bot"
    assert discord.classify_message(to_bot, TAXONOMY, NOW).action == "participate"


@pytest.mark.parametrize(
    "changes",
    [
        {"author": person("33", "helper", bot=True)},
        {"author": person("643945264868098049", "Discord", system=True)},
        {"webhook_id": "555"},
        {"type": 7},  # a member joined: a system notice
        {"type": 20},  # a slash command invocation
    ],
)
def test_bots_webhooks_and_system_messages_never_score(changes):
    outcome = discord.classify_message({**message("100", person("11", "maple")), **changes}, TAXONOMY, NOW)
    assert isinstance(outcome, Ignored)


def test_a_bot_reacting_never_scores():
    outcome = discord.classify_reaction(
        message("100", person("11", "maple")), "👍", person("33", "b", bot=True), TAXONOMY, NOW
    )
    assert isinstance(outcome, Ignored) and outcome.code == "bot"


def test_a_naive_timestamp_is_read_as_utc():
    outcome = discord.classify_message(
        message("100", person("11", "m"), timestamp="2026-11-30T10:00:00"), TAXONOMY, NOW
    )
    assert outcome.occurred_at == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_snowflakes_compare_as_integers_and_carry_their_time():
    # As strings "99" > "100"; as snowflakes 100 is the later message.
    assert discord.snowflake("100") > discord.snowflake("99")
    # Discord's reference example: 175928847299117063 was minted at 2016-04-30 11:18:25.796 UTC.
    assert discord.snowflake_time("175928847299117063") == datetime(2016, 4, 30, 11, 18, 25, 796000, tzinfo=UTC)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert discord.snowflake_time(discord.snowflake_at(moment)) == moment
    with pytest.raises(PayloadShapeError):
        discord.snowflake("abc")


# Circle ------------------------------------------------------------------------------------------


def test_the_published_circle_post_starts_a_thread():
    sample = load_sample("circle/api_v1.post.pipedream-test-event.json")
    outcome = circle.classify_post(sample, TAXONOMY, NOW)
    assert isinstance(outcome, Activity)
    assert (outcome.signal, outcome.action) == ("post.published", "ask")
    assert outcome.event_id == "circle:post:6480025"
    assert outcome.account.key == "circle:351629"
    assert outcome.account.email == "member@circle.so"
    assert outcome.occurred_at == datetime(2023, 5, 17, 8, 1, 28, 717000, tzinfo=UTC)
    assert outcome.registers_owner == ("circle:post:6480025", "circle:351629")


def test_the_published_circle_comment_by_the_posts_author_scores_nothing_and_by_another_is_an_answer():
    sample = load_sample("circle/api_v1.comment.pipedream-test-event.json")
    own = circle.classify_comment(sample, TAXONOMY, NOW, post_owner="circle:351629")
    other = circle.classify_comment(sample, TAXONOMY, NOW, post_owner="circle:1")
    unknown = circle.classify_comment(sample, TAXONOMY, NOW, post_owner=None)
    assert isinstance(own, Ignored)
    assert (other.signal, other.action) == ("comment.others", "answer")
    assert (unknown.signal, unknown.action) == ("comment.unknown_post", "answer")
    assert other.event_id == "circle:comment:19209776"
    assert other.metadata["post_id"] == "6480025"
    assert other.occurred_at == datetime(2023, 5, 17, 8, 57, 55, 84000, tzinfo=UTC)


def test_a_draft_post_scores_nothing():
    sample = copy.deepcopy(load_sample("circle/api_v1.post.pipedream-test-event.json"))
    sample["status"] = "draft"
    assert isinstance(circle.classify_post(sample, TAXONOMY, NOW), Ignored)


def test_nested_v2_authors_and_an_sso_subject_are_read():
    comment = {
        "id": 5,
        "post": {"id": 9},
        "created_at": "2026-11-30T09:00:00.000Z",
        "user": {"id": 77, "name": "Ada Lane", "email": " Ada@Example.COM ", "sso_provider_user_id": "okta|ada"},
    }
    outcome = circle.classify_comment(comment, TAXONOMY, NOW, post_owner="circle:1")
    assert outcome.account.key == "circle:77"
    assert outcome.account.email == "ada@example.com"
    assert outcome.metadata["sso_subject"] == "okta|ada"


@pytest.mark.parametrize(
    ("location", "action"),
    [("in_person", "attend_in_person_event"), ("virtual", "attend_virtual_event"), ("tbd", "attend_virtual_event")],
)
def test_circle_event_attendance_follows_the_location_type(location, action):
    event = {"id": 3, "name": "Meetup", "location_type": location, "starts_at": "2026-11-20T18:00:00.000Z"}
    attendee = {"id": 1, "community_member_id": 77, "email": "ada@example.com", "name": "Ada"}
    outcome = circle.classify_attendee(event, attendee, TAXONOMY, NOW)
    assert outcome.action == action
    assert outcome.event_id == "circle:event:3:attendee:77"
    assert outcome.occurred_at == datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def test_a_circle_attendee_who_did_not_check_in_scores_nothing():
    event = {"id": 3, "location_type": "in_person", "starts_at": "2026-11-20T18:00:00.000Z"}
    outcome = circle.classify_attendee(event, {"community_member_id": 7, "checked_in_at": None}, TAXONOMY, NOW)
    assert isinstance(outcome, Ignored)


# Meetup ------------------------------------------------------------------------------------------


def test_every_rsvp_of_the_published_rsvp_response_is_attendance():
    event = load_sample("meetup/gql.event_rsvps.response.json")["data"]["event"]
    edges = event["rsvps"]["edges"]
    outcomes = [meetup.classify_rsvp(event, edge["node"], TAXONOMY, NOW) for edge in edges]
    assert len(outcomes) == 92 and all(isinstance(o, Activity) for o in outcomes)
    # The response carries no venue, so the event's kind is unknown: the virtual action, the lesser claim.
    assert {(o.signal, o.action) for o in outcomes} == {("rsvp.yes.unknown_venue", "attend_virtual_event")}
    first = outcomes[0]
    assert first.event_id == "meetup:event:103349942:member:12251810"
    assert first.account.key == "meetup:12251810"
    # 2013-02-18T18:30:00-05:00 is 23:30 UTC.
    assert first.occurred_at == datetime(2013, 2, 18, 23, 30, tzinfo=UTC)
    assert len({o.event_id for o in outcomes}) == 92


def test_the_published_attendee_response_has_no_status_and_every_node_attended():
    event = load_sample("meetup/gql.event_attendees.response.json")["data"]["event"]
    outcomes = [meetup.classify_rsvp(event, edge["node"], TAXONOMY, NOW) for edge in event["rsvps"]["edges"]]
    assert len(outcomes) == 92 and all(o.action == "attend_virtual_event" for o in outcomes)


def test_the_published_group_events_map_to_in_person_online_and_hybrid():
    edges = load_sample("meetup/gql.group_events.response.json")["data"]["groupByUrlname"]["events"]["edges"]
    kinds = {edge["node"]["id"]: meetup.event_kind(edge["node"]) for edge in edges}
    assert [kinds[i] for i in ("264156061", "266757265", "267804814")] == ["in_person"] * 3
    assert kinds["300356000"] == "hybrid"  # American Corner Ikeja plus the online venue
    assert sum(k == "online" for k in kinds.values()) == 9
    rsvp = {"id": "1", "status": "YES", "member": {"id": "5", "name": "Member 5"}}
    by_id = {edge["node"]["id"]: edge["node"] for edge in edges}
    assert meetup.classify_rsvp(by_id["264156061"], rsvp, TAXONOMY, NOW).action == "attend_in_person_event"
    assert meetup.classify_rsvp(by_id["284322273"], rsvp, TAXONOMY, NOW).action == "attend_virtual_event"
    assert meetup.classify_rsvp(by_id["300356000"], rsvp, TAXONOMY, NOW).action == "attend_in_person_event"
    # 2019-09-21T09:00:00+01:00 is 08:00 UTC.
    assert meetup.classify_rsvp(by_id["264156061"], rsvp, TAXONOMY, NOW).occurred_at == datetime(
        2019, 9, 21, 8, 0, tzinfo=UTC
    )


def test_the_published_group_members_response_is_not_an_attendance_source():
    # Memberships say who joined the group, not who came: the poller does not read them.
    body = load_sample("meetup/gql.group_members.response.json")
    assert body["data"]["groupByUrlname"]["memberships"]["pageInfo"]["hasNextPage"] is True


@pytest.mark.parametrize("status", ["NO", "WAITLIST", "NO_SHOW"])
def test_rsvps_other_than_yes_are_not_attendance(status):
    event = {"id": "1", "eventType": "PHYSICAL", "dateTime": "2026-11-01T18:00:00+01:00"}
    outcome = meetup.classify_rsvp(event, {"id": "2", "status": status, "member": {"id": "3"}}, TAXONOMY, NOW)
    assert isinstance(outcome, Ignored)


def test_event_type_wins_over_venues():
    assert meetup.event_kind({"eventType": "ONLINE", "venues": [{"venueType": ""}]}) == "online"
    assert meetup.event_kind({"eventType": "PHYSICAL"}) == "in_person"


# Rate-limit hints --------------------------------------------------------------------------------


def test_discord_429_wait_is_the_largest_hint():
    response = httpx.Response(
        429,
        headers={"Retry-After": "2", "X-RateLimit-Reset-After": "1.337", "Content-Type": "application/json"},
        json={"message": "You are being rate limited.", "retry_after": 1.337, "global": False},
    )
    assert retry_after_seconds(response) == 2.0


def test_retry_after_as_an_http_date():
    response = httpx.Response(503, headers={"Retry-After": "Tue, 01 Dec 2026 12:00:30 GMT"})
    assert retry_after_seconds(response, now=NOW) == 30.0


def test_no_hint_means_none():
    assert retry_after_seconds(httpx.Response(500, text="oops")) is None


# Meetup listing order ----------------------------------------------------------------------------


def test_a_meetup_listing_with_more_pages_must_be_oldest_first():
    from engagement.adapters.meetup_api import MeetupSource
    from engagement.adapters.polling import Budget, HttpFetcher, PollFailed

    def newest_first(request: httpx.Request) -> httpx.Response:
        edges = [
            {"node": {"id": "2", "dateTime": "2026-11-08T18:00:00+00:00", "eventType": "ONLINE"}},
            {"node": {"id": "1", "dateTime": "2026-11-01T18:00:00+00:00", "eventType": "ONLINE"}},
        ]
        connection = {"pageInfo": {"hasNextPage": True, "endCursor": "x"}, "edges": edges}
        return httpx.Response(200, json={"data": {"groupByUrlname": {"id": "9", "events": connection}}})

    source = MeetupSource("token", ["maple-devs"])
    http = HttpFetcher(httpx.Client(transport=httpx.MockTransport(newest_first)), Budget(5))
    with pytest.raises(PollFailed, match="out of date order"):
        source.fetch("group:maple-devs", {"after": "2026-10-01T00:00:00+00:00", "done": []}, http, TAXONOMY, NOW)
