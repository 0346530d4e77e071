"""Pollers against httpx.MockTransport vendors and a real DynamoDB endpoint (moto server).

Each fake vendor pages as the vendor documents it and answers 429 the way it does; the tests check
that an interrupted run (page budget, a failure, a crash mid-page, a wait past the deadline) resumes
without losing or repeating an item.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from engagement.adapters.cursors import CursorStore
from engagement.adapters.polling import Budget
from engagement.domain import discord_messages as discord
from engagement.handlers.pollers import build_poller
from tests.conftest import ROOT

BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CHANNEL = "900000000000000001"


class FakeTime:
    """A monotonic clock that only moves when the poller sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def event_ids(deps) -> set[str]:
    client = deps.store.client
    items = client.scan(TableName=deps.settings.events_table, ProjectionExpression="event_id")["Items"]
    return {item["event_id"]["S"] for item in items}


def total_event_count(deps) -> int:
    return sum(int(m.get("event_count", 0)) for m in deps.store.scan_members())


# Discord -----------------------------------------------------------------------------------------

USERS = [
    {"id": "80000000000000001", "username": "maple", "global_name": "Maple"},
    {"id": "80000000000000002", "username": "river", "global_name": "River"},
    {"id": "80000000000000003", "username": "fern", "global_name": "Fern"},
]
BOT = {"id": "80000000000000009", "username": "helper", "bot": True}


def discord_messages(count: int) -> list[dict[str, Any]]:
    """`count` messages a minute apart; every 10th a reply to the one before; every 50th from a bot."""
    messages: list[dict[str, Any]] = []
    for i in range(count):
        moment = BASE + timedelta(minutes=i)
        author = BOT if i % 50 == 49 else USERS[i % 3]
        msg: dict[str, Any] = {
            "id": str(discord.snowflake_at(moment) + i),
            "channel_id": CHANNEL,
            "type": 0,
            "content": f"message {i}",
            "timestamp": moment.isoformat(),
            "author": author,
        }
        if i % 10 == 9:
            parent = messages[-1]
            msg.update(type=19, message_reference={"message_id": parent["id"]}, referenced_message=parent)
        messages.append(msg)
    return messages


class FakeDiscord:
    """GET /channels/{id}/messages?after&limit as Discord answers it (newest first), with scripted failures."""

    def __init__(self, messages: list[dict[str, Any]], reactions: dict[str, list[dict[str, Any]]] | None = None):
        self.messages = messages
        self.reactions = reactions or {}
        self.failures: dict[int, httpx.Response] = {}  # request number (1-based) -> response to give instead
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Authorization"] == "Bot test-bot-token"
        assert request.headers["User-Agent"].startswith("DiscordBot (")
        if len(self.requests) in self.failures:
            return self.failures[len(self.requests)]
        headers = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "1.0"}
        parts = request.url.path.split("/")
        if "reactions" in parts:
            message_id = parts[parts.index("messages") + 1]
            return httpx.Response(200, json=self.reactions.get(message_id, []), headers=headers)
        after = int(request.url.params["after"])
        limit = int(request.url.params["limit"])
        newer = [m for m in self.messages if int(m["id"]) > after]
        newer.sort(key=lambda m: int(m["id"]))
        page = newer[:limit]
        page.reverse()  # Discord lists newest first
        for m in page:
            m.setdefault("reactions", [])
        return httpx.Response(200, json=page, headers=headers)


def rate_limited() -> httpx.Response:
    return httpx.Response(
        429,
        json={"message": "You are being rate limited.", "retry_after": 1.5, "global": False},
        headers={
            "Retry-After": "2",
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": "1.5",
            "X-RateLimit-Scope": "user",
        },
    )


DISCORD_ENV = {"DISCORD_CHANNEL_IDS": CHANNEL, "DISCORD_BOT_TOKEN": "test-bot-token"}


def discord_poller(
    deps, vendor, time: FakeTime, max_pages: int = 50, seconds: float = 600, prefix: str = "", lookback_hours: int = 24
):
    deps.secret = lambda name: DISCORD_ENV.get(name)
    budget = Budget(max_pages, seconds, clock=time.clock)
    return build_poller(
        "discord",
        deps,
        budget,
        env={**DISCORD_ENV, "DISCORD_REACTION_LOOKBACK_HOURS": str(lookback_hours)},
        transport=httpx.MockTransport(vendor),
        sleep=time.sleep,
        start_at=BASE - timedelta(hours=1),
        cursor_prefix=prefix,
    )


def expected_discord_ids(messages) -> set[str]:
    return {f"discord:message:{m['id']}" for m in messages if m["author"] is not BOT}


def test_discord_reads_every_page_once_through_a_429(deps):
    messages = discord_messages(250)
    vendor = FakeDiscord(messages)
    vendor.failures[2] = rate_limited()
    time = FakeTime()
    poller, client = discord_poller(deps, vendor, time)
    with client:
        summary = poller.run()

    stream, reactions = summary.streams
    assert (summary.status, stream.status, stream.pages) == ("ok", "caught_up", 3)
    assert stream.stored == 245 and stream.ignored == 5  # 5 of the 250 are from the bot
    assert event_ids(deps) == expected_discord_ids(messages)
    assert 2.0 in time.slept  # the largest of Retry-After 2 and retry_after 1.5
    # Three pages and the one refused; then the reaction pass lists the last 24 hours (the clock says 1 December).
    assert len(vendor.requests) == 5
    assert (reactions.stream, reactions.pages, reactions.stored) == (f"reactions:{CHANNEL}", 1, 0)
    cursor = CursorStore(deps.settings, deps.store.client).get(f"discord:channel:{CHANNEL}")
    assert cursor.state == {"after": messages[-1]["id"]}
    answers = [e for e in (deps.store.get_event(f"discord:message:{m['id']}") for m in messages[9::10]) if e]
    assert answers and {e["action"] for e in answers} == {"answer"}


def test_discord_resumes_after_the_page_budget_without_losing_or_repeating(deps):
    messages = discord_messages(150)
    vendor = FakeDiscord(messages)
    vendor.failures[3] = rate_limited()
    first, client = discord_poller(deps, vendor, FakeTime(), max_pages=1)
    with client:
        one = first.run().streams[0]
    assert (one.status, one.pages, one.stored + one.ignored) == ("budget", 1, 100)

    second, client = discord_poller(deps, vendor, FakeTime(), max_pages=50)
    with client:
        two = second.run().streams[0]
    assert two.status == "caught_up" and two.duplicates == 0
    assert one.stored + two.stored == 147
    assert event_ids(deps) == expected_discord_ids(messages)
    assert total_event_count(deps) == 147


def test_a_page_that_keeps_failing_leaves_the_cursor_on_the_last_stored_page(deps):
    messages = discord_messages(150)
    vendor = FakeDiscord(messages)
    for n in range(2, 7):  # the second page fails all 5 attempts
        vendor.failures[n] = httpx.Response(502, text="Bad Gateway")
    poller, client = discord_poller(deps, vendor, FakeTime())
    with client:
        summary = poller.run()
    assert summary.status == "failed" and "gave up after 5 attempts" in summary.streams[0].error
    assert CursorStore(deps.settings, deps.store.client).get(f"discord:channel:{CHANNEL}").state == {
        "after": messages[99]["id"]
    }

    vendor.failures.clear()
    poller, client = discord_poller(deps, vendor, FakeTime())
    with client:
        again = poller.run().streams[0]
    assert again.status == "caught_up" and again.duplicates == 0
    assert event_ids(deps) == expected_discord_ids(messages)


def test_a_crash_in_the_middle_of_a_page_repeats_the_page_and_counts_it_once(deps):
    messages = discord_messages(150)
    vendor = FakeDiscord(messages)
    original = deps.store.record
    calls = {"n": 0}

    def crash_on_the_130th(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 130:
            raise RuntimeError("the function ran out of memory")
        return original(*args, **kwargs)

    deps.store.record = crash_on_the_130th
    poller, client = discord_poller(deps, vendor, FakeTime())
    with client, pytest.raises(RuntimeError):
        poller.run()
    deps.store.record = original
    assert len(event_ids(deps)) == 129

    poller, client = discord_poller(deps, vendor, FakeTime())
    with client:
        again = poller.run().streams[0]
    assert again.duplicates == 129 - 98  # page 2's items stored before the crash are recognised
    assert event_ids(deps) == expected_discord_ids(messages)
    assert total_event_count(deps) == 147  # every message counted exactly once on its member


def test_a_wait_past_the_deadline_ends_the_run_without_moving_the_cursor(deps):
    vendor = FakeDiscord(discord_messages(20))
    vendor.failures[1] = httpx.Response(429, json={"message": "slow down", "retry_after": 3600, "global": True})
    poller, client = discord_poller(deps, vendor, FakeTime(), seconds=60)
    with client:
        stream = poller.run().streams[0]
    assert stream.status == "out_of_time" and stream.stored == 0
    assert CursorStore(deps.settings, deps.store.client).get(f"discord:channel:{CHANNEL}") is None


def test_an_exhausted_bucket_is_waited_out_before_the_next_request(deps):
    messages = discord_messages(150)
    vendor = FakeDiscord(messages)
    first_page = vendor.__call__

    def exhausted(request: httpx.Request) -> httpx.Response:
        response = first_page(request)
        response.headers["X-RateLimit-Remaining"] = "0"
        response.headers["X-RateLimit-Reset-After"] = "3.25"
        return response

    time = FakeTime()
    poller, client = discord_poller(deps, exhausted, time)
    with client:
        assert poller.run().status == "ok"
    # Waited out before each request after the first (page 2, then the reaction pass); never a 429.
    assert time.slept == [3.25, 3.25]


def test_reactions_are_read_per_emoji_and_credited_to_the_reactor(deps):
    messages = discord_messages(3)
    messages[0]["reactions"] = [{"count": 3, "me": False, "emoji": {"id": None, "name": "🎉"}}]
    author = messages[0]["author"]
    vendor = FakeDiscord(messages, reactions={messages[0]["id"]: [USERS[1], author, BOT]})
    poller, client = discord_poller(deps, vendor, FakeTime(), lookback_hours=24 * 30)
    with client:
        channel, reactions = poller.run().streams
    reaction_requests = [r for r in vendor.requests if "reactions" in r.url.path]
    assert len(reaction_requests) == 1 and reaction_requests[0].url.path.endswith("/reactions/🎉")
    assert f"discord:reaction:{messages[0]['id']}:🎉:{USERS[1]['id']}" in event_ids(deps)
    assert channel.stored == 3
    assert (reactions.stored, reactions.ignored) == (1, 2)  # the author's own reaction and the bot's do not count
    assert deps.store.get_event(f"discord:reaction:{messages[0]['id']}:🎉:{USERS[1]['id']}")["action"] == "react"


def test_a_reaction_added_after_the_message_was_read_is_counted_once_on_a_later_run(deps):
    messages = discord_messages(3)
    vendor = FakeDiscord(messages)
    poller, client = discord_poller(deps, vendor, FakeTime(), lookback_hours=24 * 30)
    with client:
        poller.run()
    assert not [r for r in vendor.requests if "reactions" in r.url.path]

    messages[1]["reactions"] = [{"count": 1, "me": False, "emoji": {"id": "41771983429993937", "name": "LUL"}}]
    vendor.reactions[messages[1]["id"]] = [USERS[0]]
    poller, client = discord_poller(deps, vendor, FakeTime(), lookback_hours=24 * 30)
    with client:
        later = poller.run().streams[1]
    assert later.stored == 1
    assert f"discord:reaction:{messages[1]['id']}:LUL:41771983429993937:{USERS[0]['id']}" in event_ids(deps)

    # Unchanged counts: the next pass lists the messages but asks nobody who reacted.
    before = len([r for r in vendor.requests if "reactions" in r.url.path])
    poller, client = discord_poller(deps, vendor, FakeTime(), lookback_hours=24 * 30)
    with client:
        again = poller.run().streams[1]
    assert (again.stored, again.duplicates) == (0, 0)
    assert len([r for r in vendor.requests if "reactions" in r.url.path]) == before


def test_backfill_cursors_are_separate_and_resume(deps):
    messages = discord_messages(150)
    vendor = FakeDiscord(messages)
    poller, client = discord_poller(deps, vendor, FakeTime(), max_pages=1, prefix="backfill:2026-11-20:")
    with client:
        assert poller.run().streams[0].status == "budget"
    cursors = CursorStore(deps.settings, deps.store.client)
    assert cursors.get(f"discord:channel:{CHANNEL}") is None
    assert cursors.get(f"backfill:2026-11-20:discord:channel:{CHANNEL}").state == {"after": messages[99]["id"]}
    poller, client = discord_poller(deps, vendor, FakeTime(), prefix="backfill:2026-11-20:")
    with client:
        assert poller.run().streams[0].stored == 49  # the last 50, less one bot message
    assert event_ids(deps) == expected_discord_ids(messages)


def test_two_runs_on_one_cursor_never_move_it_backwards(deps):
    cursors = CursorStore(deps.settings, deps.store.client)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    version = cursors.put("discord:channel:1", {"after": "5"}, None, now)
    cursors.put("discord:channel:1", {"after": "9"}, version, now)
    from engagement.adapters.cursors import CursorConflict

    with pytest.raises(CursorConflict):
        cursors.put("discord:channel:1", {"after": "7"}, version, now)
    assert cursors.get("discord:channel:1").state == {"after": "9"}


# Circle ------------------------------------------------------------------------------------------


def circle_posts(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": 5000 + i,
            "status": "published",
            "name": f"Post {i}",
            "space_id": 12,
            "user_id": 700 + i % 4,
            "user_email": f"member{i % 4}@example.com",
            "user_name": f"Member {i % 4}",
            "created_at": (BASE + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
            "published_at": (BASE + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        }
        for i in range(count)
    ]


class FakeCircle:
    """Admin API v2 lists: page/per_page, newest first, {page, per_page, has_next_page, count, page_count, records}."""

    def __init__(self, posts, comments=(), events=(), attendees=None):
        self.lists = {"/api/admin/v2/posts": posts, "/api/admin/v2/comments": list(comments)}
        self.lists["/api/admin/v2/events"] = list(events)
        self.attendees = attendees or {}
        self.failures: dict[int, httpx.Response] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Authorization"] == "Bearer circle-token"
        if len(self.requests) in self.failures:
            return self.failures[len(self.requests)]
        page, per_page = int(request.url.params["page"]), int(request.url.params["per_page"])
        if request.url.path.endswith("/event_attendees"):
            records = self.attendees.get(int(request.url.params["event_id"]), [])
        else:
            records = sorted(self.lists[request.url.path], key=lambda r: r.get("created_at", ""), reverse=True)
        chunk = records[(page - 1) * per_page : page * per_page]
        count = len(records)
        return httpx.Response(
            200,
            json={
                "page": page,
                "per_page": per_page,
                "has_next_page": page * per_page < count,
                "count": count,
                "page_count": -(-count // per_page),
                "records": chunk,
            },
        )


def circle_poller(deps, vendor, time: FakeTime, max_pages: int = 50):
    env = {"CIRCLE_API_TOKEN": "circle-token", "CIRCLE_API_BASE_URL": "https://app.circle.so/api/admin/v2"}
    deps.secret = lambda name: env.get(name)
    return build_poller(
        "circle",
        deps,
        Budget(max_pages, 600, clock=time.clock),
        env=env,
        transport=httpx.MockTransport(vendor),
        sleep=time.sleep,
        start_at=BASE - timedelta(days=1),
    )


def test_circle_posts_comments_and_attendance_through_a_429_and_an_interruption(deps, clock):
    posts = circle_posts(230)
    comments = [
        # on Member 1's post, by Member 2: an answer; by Member 1 on their own post: nothing
        {
            "id": 1,
            "post_id": 5001,
            "user_id": 702,
            "user_email": "member2@example.com",
            "created_at": "2026-11-21T10:00:00Z",
        },
        {
            "id": 2,
            "post_id": 5001,
            "user_id": 701,
            "user_email": "member1@example.com",
            "created_at": "2026-11-21T11:00:00Z",
        },
    ]
    events = [
        {"id": 31, "name": "Office hours", "location_type": "virtual", "starts_at": "2026-11-25T16:00:00Z",
         "ends_at": "2026-11-25T17:00:00Z", "created_at": "2026-11-01T00:00:00Z"},
        {"id": 32, "name": "Future summit", "location_type": "in_person", "starts_at": "2027-03-01T09:00:00Z",
         "ends_at": "2027-03-01T17:00:00Z", "created_at": "2026-11-02T00:00:00Z"},
    ]  # fmt: skip
    attendees = {
        31: [{"id": 1, "community_member_id": 700, "email": "member0@example.com", "name": "Member 0"}],
        32: [{"id": 2, "community_member_id": 701, "email": "member1@example.com", "name": "Member 1"}],
    }
    vendor = FakeCircle(posts, comments, events, attendees)
    vendor.failures[2] = httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "30"})
    time = FakeTime()

    first, client = circle_poller(deps, vendor, time, max_pages=2)
    with client:
        partial = first.run()
    assert partial.streams[0].status == "budget" and partial.streams[0].stored == 200
    assert 30.0 in time.slept

    second, client = circle_poller(deps, vendor, time)
    with client:
        summary = second.run()
    posts_run, comments_run, events_run = summary.streams
    assert posts_run.status == "caught_up"
    # The resumed pass re-reads the page before (the overlap): those 100 are recognised, not counted again.
    assert posts_run.stored == 30 and posts_run.duplicates == 100
    ids = event_ids(deps)
    assert {f"circle:post:{p['id']}" for p in posts} <= ids
    assert "circle:comment:1" in ids and "circle:comment:2" not in ids
    assert deps.store.get_event("circle:comment:1")["action"] == "answer"
    assert "circle:event:31:attendee:700" in ids and "circle:event:32:attendee:701" not in ids
    assert deps.store.get_event("circle:event:31:attendee:700")["action"] == "attend_virtual_event"
    assert total_event_count(deps) == 230 + 1 + 1

    # A new post later: one page, stopped at the watermark, nothing repeated.
    newer = circle_posts(231)[-1]
    vendor.lists["/api/admin/v2/posts"].append(newer)
    before = len(vendor.requests)
    third, client = circle_poller(deps, vendor, time)
    with client:
        latest = third.run().streams[0]
    assert (latest.stored, latest.duplicates, latest.pages) == (1, 0, 1)
    assert vendor.requests[before].url.params["sort"] == "latest"


# Meetup ------------------------------------------------------------------------------------------


class FakeMeetup:
    """POST /gql-ext: past events of a group after a time, and an event's RSVPs in pages (base64-ish cursors)."""

    def __init__(self, events: list[dict[str, Any]], rsvps: dict[str, list[dict[str, Any]]]):
        self.events = events
        self.rsvps = rsvps
        self.failures: dict[int, httpx.Response] = {}
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        assert request.headers["Authorization"] == "Bearer meetup-token"
        if len(self.requests) in self.failures:
            return self.failures[len(self.requests)]
        variables = body["variables"]
        if "groupByUrlname" in body["query"]:
            after = datetime.fromisoformat(variables["after"])
            found = [e for e in self.events if datetime.fromisoformat(e["dateTime"]) > after]
            page = found[: variables["first"]]
            return httpx.Response(
                200,
                json={
                    "data": {
                        "groupByUrlname": {
                            "id": "1",
                            "events": {
                                "pageInfo": {"hasNextPage": len(found) > len(page), "endCursor": "x"},
                                "edges": [{"node": e} for e in page],
                            },
                        }
                    }
                },
            )
        all_rsvps = self.rsvps[variables["id"]]
        start = int(variables["cursor"] or 0)
        chunk = all_rsvps[start : start + variables["first"]]
        more = start + len(chunk) < len(all_rsvps)
        return httpx.Response(
            200,
            json={
                "data": {
                    "event": {
                        "id": variables["id"],
                        "rsvps": {
                            "pageInfo": {"hasNextPage": more, "endCursor": str(start + len(chunk))},
                            "edges": [{"node": r} for r in chunk],
                        },
                    }
                }
            },
        )


def meetup_poller(deps, vendor, time: FakeTime, max_pages: int = 50):
    env = {"MEETUP_TOKEN": "meetup-token", "MEETUP_GROUP_URLNAMES": "maple-devs"}
    deps.secret = lambda name: env.get(name)
    return build_poller(
        "meetup",
        deps,
        Budget(max_pages, 600, clock=time.clock),
        env=env,
        transport=httpx.MockTransport(vendor),
        sleep=time.sleep,
        start_at=BASE - timedelta(days=30),
    )


def test_meetup_reads_each_past_event_once_through_limits_and_an_interruption(deps):
    events = [
        {"id": "e1", "title": "Talks", "dateTime": "2026-11-01T18:30:00+01:00", "eventType": "PHYSICAL"},
        {"id": "e2", "title": "Online", "dateTime": "2026-11-08T18:30:00-05:00", "eventType": "ONLINE"},
        {"id": "e3", "title": "Same time", "dateTime": "2026-11-08T23:30:00+00:00", "eventType": "PHYSICAL"},
    ]
    yes = [{"id": f"r{i}", "status": "YES", "member": {"id": str(i), "name": f"M{i}"}} for i in range(150)]
    rsvps = {
        "e1": yes,
        "e2": [{"id": "s1", "status": "YES", "member": {"id": "1", "name": "M1"}},
               {"id": "s2", "status": "NO", "member": {"id": "2", "name": "M2"}}],
        "e3": [{"id": "t1", "status": "WAITLIST", "member": {"id": "3", "name": "M3"}},
               {"id": "t2", "status": "YES", "member": {"id": "4", "name": "M4"}}],
    }  # fmt: skip
    vendor = FakeMeetup(events, rsvps)
    vendor.failures[2] = httpx.Response(429, text="slow down", headers={"Retry-After": "5"})
    vendor.failures[3] = httpx.Response(
        200,
        json={
            "errors": [{"message": "Too many requests, rate limit exceeded", "extensions": {"code": "RATE_LIMITED"}}]
        },
    )
    time = FakeTime()
    first, client = meetup_poller(deps, vendor, time, max_pages=1)
    with client:
        one = first.run().streams[0]
    assert (one.status, one.stored) == ("budget", 150)  # e1's two RSVP pages
    assert time.slept[:2] == [5.0, 60.0]

    second, client = meetup_poller(deps, vendor, time)
    with client:
        two = second.run().streams[0]
    assert (two.status, two.stored, two.duplicates, two.ignored) == ("caught_up", 2, 0, 2)
    ids = event_ids(deps)
    assert len(ids) == 152
    assert deps.store.get_event("meetup:event:e1:member:7")["action"] == "attend_in_person_event"
    assert deps.store.get_event("meetup:event:e2:member:1")["action"] == "attend_virtual_event"
    assert deps.store.get_event("meetup:event:e3:member:4")["action"] == "attend_in_person_event"
    # e2 and e3 start at the same instant (23:30 UTC): both are done, and the cursor names them.
    state = CursorStore(deps.settings, deps.store.client).get("meetup:group:maple-devs").state
    assert state == {"after": "2026-11-08T23:30:00+00:00", "done": ["e2", "e3"]}

    third, client = meetup_poller(deps, vendor, time)
    with client:
        again = third.run().streams[0]
    assert (again.stored, again.duplicates) == (0, 0)


def test_a_malformed_message_is_ignored_with_its_reason_and_never_blocks_the_channel(deps):
    messages = discord_messages(3)
    messages[1]["author"] = {"username": "no-id"}  # no author id: unreadable
    vendor = FakeDiscord(messages)
    poller, client = discord_poller(deps, vendor, FakeTime())
    with client:
        channel = poller.run().streams[0]
    assert (channel.status, channel.stored, channel.ignored) == ("caught_up", 2, 1)
    assert CursorStore(deps.settings, deps.store.client).get(f"discord:channel:{CHANNEL}").state == {
        "after": messages[2]["id"]
    }


# The scheduled handler ---------------------------------------------------------------------------


def test_the_scheduled_run_raises_when_a_stream_failed_and_keeps_its_cursor(deps, context, monkeypatch):
    from engagement.handlers.pollers import PollError, run_scheduled

    monkeypatch.setenv("DISCORD_CHANNEL_IDS", CHANNEL)
    deps.secret = lambda name: "revoked-token" if name == "DISCORD_BOT_TOKEN" else None

    def unauthorized(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": "401: Unauthorized", "code": 0})

    event = json.loads((ROOT / "events" / "discord-poller.scheduled.json").read_text())
    with pytest.raises(PollError, match="HTTP 401"):
        run_scheduled("discord", event, context, deps, transport=httpx.MockTransport(unauthorized))
    assert CursorStore(deps.settings, deps.store.client).get(f"discord:channel:{CHANNEL}") is None


def test_the_scheduled_run_of_an_unconfigured_poller_does_nothing(deps, context, monkeypatch):
    from engagement.handlers.pollers import run_scheduled

    monkeypatch.delenv("MEETUP_GROUP_URLNAMES", raising=False)
    deps.secret = lambda name: None
    result = run_scheduled("meetup", {}, context, deps)
    assert result == {"platform": "meetup", "status": "not_configured", "reason": result["reason"], "streams": []}
    assert "MEETUP_TOKEN" in result["reason"]
