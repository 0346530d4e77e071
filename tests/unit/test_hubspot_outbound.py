"""HubSpot outbound hardening: limiter, 429 storms, 5xx, timeouts, 207, 400 split, 409, duplicates, setup."""

from __future__ import annotations

import httpx
import pytest
import stamina

from engagement.adapters.hubspot import HubSpot, RateLimiter
from engagement.domain import taxonomy
from engagement.domain.crm import MemberChange
from tests.hubspot_fake import FakeHubSpot, FakeTime, error_response, rate_limited, server_error

TAX = taxonomy.build()
UPSERT = "/crm/v3/objects/contacts/batch/upsert"


@pytest.fixture(autouse=True)
def no_backoff_waits():
    stamina.set_testing(True, attempts=6)
    yield
    stamina.set_testing(False)


def change(
    i: int, email: str | None = None, tier: str = "Active", score: float = 40.0, version: int = 2, entered=False
):
    return MemberChange(
        member_id=f"m{i}",
        email=email or f"u{i}@example.com",
        name=f"user {i}",
        score=score,
        tier=tier,
        previous_tier="Casual",
        tier_changed_at=None,
        last_activity_at=None,
        version=version,
        entered_task_tier=entered,
    )


def hubspot(fake: FakeHubSpot, time: FakeTime | None = None) -> HubSpot:
    time = time or FakeTime()
    return HubSpot(
        "pat-test",
        "https://api.hubapi.test",
        client=httpx.Client(transport=httpx.MockTransport(fake)),
        limiter=RateLimiter([(100, 10.0), (10, 1.0)], clock=time, sleep=time.sleep),
    )


def test_limiter_keeps_to_10_per_second_and_100_per_10_seconds():
    time = FakeTime()
    limiter = RateLimiter([(100, 10.0), (10, 1.0)], clock=time, sleep=time.sleep)
    start = time.now
    for _ in range(10):
        limiter.acquire()
    assert time.now == start  # the first 10 go at once
    limiter.acquire()
    assert time.now == start + 1.0  # the 11th waits for the 1-second window
    for _ in range(89):
        limiter.acquire()
    # 100 calls: ten per second takes 9 s; the 101st must wait until the first call is 10 s old.
    assert time.now == start + 9.0
    limiter.acquire()
    assert time.now == start + 10.0


def test_a_429_storm_longer_than_the_attempts_fails_the_batch_and_the_next_push_lands():
    fake = FakeHubSpot(faults={i: rate_limited() for i in range(6)})
    crm = hubspot(fake)
    first = crm.push([change(1)])
    assert not first.pushed and "429" in first.failed["m1"] and first.calls == 6
    second = crm.push([change(1)])
    assert second.pushed == {"m1"} and second.calls == 1


def test_429_without_retry_after_backs_off_and_lands():
    fake = FakeHubSpot(faults={0: rate_limited(retry_after=None), 1: rate_limited(retry_after="not-a-number")})
    result = hubspot(fake).push([change(1)])
    assert result.pushed == {"m1"} and result.calls == 3


def test_5xx_and_timeouts_are_retried():
    fake = FakeHubSpot(
        faults={
            0: server_error(),
            1: httpx.ReadTimeout("read timed out"),
            2: httpx.ConnectError("connection refused"),
            3: error_response(502, "Bad Gateway", "BAD_GATEWAY"),
        }
    )
    result = hubspot(fake).push([change(1)])
    assert result.pushed == {"m1"} and result.calls == 5


def test_persistent_timeouts_fail_the_members_without_raising():
    fake = FakeHubSpot(faults={i: httpx.ReadTimeout("read timed out") for i in range(6)})
    result = hubspot(fake).push([change(1), change(2)])
    assert set(result.failed) == {"m1", "m2"} and "timed out" in result.failed["m1"]


def test_207_mixed_results_fail_only_the_refused_inputs_with_hubspots_reason():
    mixed = httpx.Response(
        207,
        json={
            "status": "COMPLETE",
            "results": [
                {"id": "501", "objectWriteTraceId": "m1", "properties": {"email": "u1@example.com"}, "new": False}
            ],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid",
                    "context": {"ids": ["u2@example.com"]},
                    "errors": [],
                }
            ],
            "startedAt": "2026-12-01T12:00:00.000Z",
            "completedAt": "2026-12-01T12:00:00.100Z",
        },
    )
    result = hubspot(FakeHubSpot(faults={0: mixed})).push([change(1), change(2)])
    assert result.pushed == {"m1"} and result.records == {"m1": "501"}
    assert result.failed == {"m2": "VALIDATION_ERROR: Property values were not valid"}


def test_a_400_batch_is_split_until_the_bad_input_stands_alone():
    fake = FakeHubSpot(refuse_email=lambda email: email == "u3@example.com")
    result = hubspot(fake).push([change(i) for i in range(8)])
    assert result.pushed == {f"m{i}" for i in range(8)} - {"m3"}
    assert "VALIDATION_ERROR" in result.failed["m3"] and "u3@example.com" in result.failed["m3"]
    # 8 -> [0-3] refused, [4-7] ok -> [0,1] ok, [2,3] refused -> [2] ok, [3] refused: 7 calls.
    assert [len(c["inputs"]) for c in fake.calls(UPSERT)] == [8, 4, 2, 2, 1, 1, 4]


def test_409_updates_the_existing_contact_by_id():
    fake = FakeHubSpot()
    fake.contacts["old@example.com"] = {"id": "1948209", "properties": {}}
    conflict = error_response(409, "Contact already exists. Existing ID: 1948209", "CONFLICT")
    fake.faults = {0: conflict}
    result = hubspot(fake).push([change(1, "Old@Example.com")])
    assert result.pushed == {"m1"} and result.records == {"m1": "1948209"}
    (update,) = fake.calls("/crm/v3/objects/contacts/batch/update")
    assert update["inputs"][0]["id"] == "1948209"
    assert update["inputs"][0]["properties"]["community_tier"] == "Active"


def test_emails_are_normalized_and_deduplicated_within_a_batch():
    fake = FakeHubSpot()
    result = hubspot(fake).push(
        [change(1, " Ana@Example.COM", score=30.0, version=5), change(2, "ana@example.com", score=70.0, version=9)]
    )
    (upsert,) = fake.calls(UPSERT)
    assert [i["id"] for i in upsert["inputs"]] == ["ana@example.com"]
    assert upsert["inputs"][0]["objectWriteTraceId"] == "m2"
    assert result.pushed == {"m2"} and set(result.skipped) == {"m1"} and not result.failed


def test_a_failed_task_fails_the_member_so_it_is_retried():
    fake = FakeHubSpot(faults={2: error_response(400, "Property values were not valid", "VALIDATION_ERROR")})
    result = hubspot(fake).push([change(1, tier="Power User", score=85.0, entered=True)])
    assert fake.paths() == [UPSERT, "/crm/v3/objects/contacts/batch/read", "/crm/v3/objects/tasks/batch/create"]
    assert not result.pushed and result.failed["m1"].startswith("contact updated but the task failed")


def test_setup_creates_group_and_properties_once():
    fake = FakeHubSpot()
    crm = hubspot(fake)
    first = crm.setup_properties()
    assert first == {
        "group community_engagement": "created",
        "community_score": "created",
        "community_tier": "created",
        "community_tier_changed_at": "created",
        "community_last_activity_at": "created",
    }
    assert set(crm.setup_properties().values()) == {"exists"}
    created = fake.calls("/crm/v3/properties/contacts")[:4]
    assert {p["groupName"] for p in created} == {"community_engagement"}
    assert {p["name"]: p["type"] for p in created}["community_tier_changed_at"] == "datetime"


def test_setup_stops_on_a_refusal_other_than_409():
    from engagement.adapters.hubspot import CrmRejected

    fake = FakeHubSpot(
        faults={0: error_response(403, "This app hasn't been granted all required scopes", "MISSING_SCOPES")}
    )
    with pytest.raises(CrmRejected):
        hubspot(fake).setup_properties()


def test_tasks_count_as_created_when_hubspot_echoes_no_trace_ids():
    answer = httpx.Response(
        201,
        json={
            "status": "COMPLETE",
            "results": [{"id": "9001", "properties": {"hs_task_subject": "Community Power User: user 1"}}],
            "startedAt": "2026-12-01T12:00:00.000Z",
            "completedAt": "2026-12-01T12:00:00.100Z",
        },
    )
    fake = FakeHubSpot(faults={2: answer})
    result = hubspot(fake).push([change(1, tier="Power User", score=85.0, entered=True)])
    assert result.pushed == {"m1"} and not result.failed
