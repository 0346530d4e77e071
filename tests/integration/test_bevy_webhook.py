"""POST /webhooks/bevy: check-ins become attendance; the shared secret in X-BEVY-SECRET is required."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from engagement.domain import bevy, taxonomy
from engagement.handlers import bevy_webhook, ingest
from tests.conftest import SECRET, response_json, rest_event


def attendee(user_id: int, audience: str | None, checkin: str | None = "2026-11-28T18:05:00Z", **extra) -> dict:
    entry = {
        "id": 500 + user_id,
        "first_name": "Sam",
        "last_name": f"Guest{user_id}",
        "email": f"guest{user_id}@example.com",
        "user_id": user_id,
        "created_date": "2026-11-01T10:00:00Z",
        "checkin_date": checkin,
        "deleted_date": None,
        "ticket_title": "General admission",
        "status": "registered",
        "event_chapter_id": 8,
        "event_id": 77,
        **extra,
    }
    if audience is not None:
        entry["ticket_audience_type_enum_value"] = audience
    return entry


def post(deps, groups, secret: str | None = SECRET):
    body = json.dumps(groups).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-BEVY-SECRET"] = secret
    return ingest.handle(bevy_webhook.PLATFORM, rest_event(body, headers, path="/webhooks/bevy"), deps)


@pytest.fixture
def bevy_deps(deps, monkeypatch):
    monkeypatch.setenv("BEVY_WEBHOOK_SECRET", SECRET)
    return deps


def test_check_ins_map_to_the_two_attendance_actions(bevy_deps):
    groups = [
        {
            "type": "attendee",
            "data": [
                attendee(1, "In-Person"),
                attendee(2, "Virtual"),
                attendee(3, "Hybrid"),
                attendee(4, "Virtual", checkin=None),
                attendee(5, "Virtual", status="deleted"),
            ],
        },
        {"type": "event", "data": [{"id": 77, "title": "Meetup", "status": "Published"}]},
    ]
    response = post(bevy_deps, groups)
    assert response["statusCode"] == 200
    answer = response_json(response)
    results = answer["results"]
    assert [r["status"] for r in results] == ["stored", "stored", "stored", "ignored", "ignored", "ignored"]
    assert [r.get("action") for r in results[:3]] == [
        "attend_in_person_event",
        "attend_virtual_event",
        "attend_virtual_event",
    ]
    assert results[0]["event_id"] == "bevy:event:77:attendee:1"
    assert results[3]["code"] == results[4]["code"] == "not_attended"
    # 15 points, 90-day half-life, checked in 2 days 17 h 55 min before the fixed clock (2026-12-01T12:00Z).
    age_days = 2 + (17 * 60 + 55) / 1440
    assert results[0]["score"] == pytest.approx(15 * 2 ** (-age_days / 90), abs=1e-4)
    member = bevy_deps.store.get_member(results[0]["member_id"])
    assert member["email"] == "guest1@example.com"


def test_a_redelivered_check_in_counts_once(bevy_deps):
    groups = [{"type": "attendee", "data": [attendee(1, "Virtual")]}]
    post(bevy_deps, groups)
    again = response_json(post(bevy_deps, groups))
    assert again["results"][0]["status"] == "duplicate"


@pytest.mark.parametrize("secret", [None, "wrong-secret", ""])
def test_a_missing_or_wrong_secret_is_401(bevy_deps, secret):
    response = post(bevy_deps, [{"type": "attendee", "data": [attendee(1, "Virtual")]}], secret=secret)
    assert response["statusCode"] == 401
    assert bevy_deps.store.client.scan(TableName=bevy_deps.settings.events_table, Select="COUNT")["Count"] == 0


@pytest.mark.parametrize("groups", [{"type": "attendee"}, [1, 2], [{"type": "attendee", "data": "x"}]])
def test_misshapen_deliveries_are_400(bevy_deps, groups):
    response = post(bevy_deps, groups)
    assert response["statusCode"] == 400


def test_the_published_receivers_fixture_shape_is_read():
    # The shape of discourse-bevy-plugin's attendee fixture: registered, not checked in, `Virtual`.
    entry = attendee(4, "Virtual", checkin=None, deleted_date="2021-10-18T16:04:40Z")
    outcomes = bevy.classify([{"type": "attendee", "data": [entry]}], taxonomy.build(), datetime.now(UTC))
    assert outcomes[0][1].code == "not_attended"
    assert bevy.audience("Virtual") == "online" and bevy.audience("In Person") == "in_person"
