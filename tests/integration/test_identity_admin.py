"""The identity admin API (/admin/...) through `lambda_handler`, with REST v1 events, against the moto stack."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from engagement.domain.taxonomy import build
from engagement.handlers import identity_admin
from tests.conftest import response_json, rest_event
from tests.integration.test_identity import (
    ANA,
    BO,
    decayed,
    discourse,
    github,
    iso,
    pull_request,
    two_people,
)

TAX = build()
TOKEN = "admin-test-token-0123456789"


@pytest.fixture
def admin(deps, clock, monkeypatch):
    """The handler's dependencies on the moto stack, with the test clock and the default taxonomy."""
    monkeypatch.setenv("ADMIN_API_TOKEN", TOKEN)
    monkeypatch.setattr(
        identity_admin, "_deps", identity_admin.AdminDependencies(store=deps.store, clock=clock, taxonomy=lambda: TAX)
    )
    return deps


def call(
    context,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
    actor: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if actor is not None:
        headers["X-Actor"] = actor
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    event = rest_event(data, headers, path=path)
    event["resource"] = event["requestContext"]["resourcePath"] = "/admin/{proxy+}"
    event["pathParameters"] = {"proxy": path.removeprefix("/admin/")}
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    response = identity_admin.lambda_handler(event, context)
    return response["statusCode"], response_json(response)


def score(deps, member_id: str) -> float:
    return float(deps.store.get_member(member_id)["score"])


def test_no_token_or_a_wrong_one_is_refused_before_anything_is_read_or_changed(admin, clock, context):
    ana, bo = two_people(admin, clock)
    merge = {"member": bo, "into": ana}

    for token in (None, "wrong-token", "", TOKEN + "x"):
        status, body = call(context, "POST", "/admin/members/merge", merge, token=token)
        assert status == 401, token
        assert body["status"] == "refused" and body["error"] == "unauthorized" and body["message"]
    event = rest_event(json.dumps(merge).encode(), {"Authorization": f"Basic {TOKEN}"}, path="/admin/members/merge")
    assert identity_admin.lambda_handler(event, context)["statusCode"] == 401
    # An unauthenticated caller does not learn which routes exist either.
    assert call(context, "GET", "/admin/nothing-here", token="wrong")[0] == 401

    assert "merged_into" not in admin.store.get_member(bo)
    assert not [e for e in admin.store.audit.history(ana) if e["actor"].startswith("api:")]


def test_an_unconfigured_token_is_our_fault(admin, context, monkeypatch):
    monkeypatch.delenv("ADMIN_API_TOKEN")

    status, body = call(context, "GET", "/admin/identities/suggestions")

    assert status == 500 and body["error"] == "not_configured" and "ADMIN_API_TOKEN" in body["message"]


def test_malformed_bodies_are_refused_naming_the_field(admin, clock, context):
    ana, bo = two_people(admin, clock)

    cases = [
        (b"{not json", "invalid_json", "JSON"),
        (b'["a list"]', "invalid_body", "object"),
        (json.dumps({"member": bo}).encode(), "missing_field", "'into'"),
        (json.dumps({"member": 42, "into": ana}).encode(), "invalid_field", "'member'"),
        (json.dumps({"member": bo, "into": "  "}).encode(), "invalid_field", "'into'"),
        (json.dumps({"member": bo, "into": ana, "int0": ana}).encode(), "unknown_field", "int0"),
        (json.dumps({"member": "not an identity", "into": ana}).encode(), "invalid_field", "'member'"),
    ]
    for raw, code, named in cases:
        status, body = call(context, "POST", "/admin/members/merge", raw=raw)
        assert (status, body["error"]) == (400, code), raw
        assert named in body["message"], body

    status, body = call(context, "POST", "/admin/members/merge", {"member": bo, "into": ana}, actor="x" * 101)
    assert status == 400 and "X-Actor" in body["message"]
    assert "merged_into" not in admin.store.get_member(bo)
    # The refusal of an unknown field names the optional ones too.
    status, body = call(context, "POST", "/admin/members/merge", {"member": bo, "into": ana, "whyy": "a"})
    assert body["message"] == "unknown field(s): whyy; expected member, into (optional: why)"
    # forget takes no free text: its audit record must hold no personal data.
    status, body = call(context, "POST", "/admin/forget", {"identity": "email:ana@example.com", "why": "asked"})
    assert (status, body["error"], body["message"]) == (
        400,
        "unknown_field",
        "unknown field(s): why; expected identity",
    )
    assert admin.store.get_member(ana) is not None


def test_a_body_over_64_kb_is_refused_and_nothing_is_erased(admin, clock, context):
    ana, _ = two_people(admin, clock)
    big = {"identity": "email:ana@example.com", "why": "x" * (64 * 1024)}

    status, body = call(context, "POST", "/admin/forget", big)

    assert status == 413 and body["error"] == "too_large"
    assert float(admin.store.get_member(ana)["score"]) == pytest.approx(ANA, abs=1e-9)


def test_unknown_members_and_routes_are_404(admin, context):
    assert call(context, "GET", "/admin/members/github%3A404")[1]["error"] == "not_found"
    assert call(context, "GET", "/admin/members/github%3A404")[0] == 404
    assert call(context, "GET", "/admin/members/" + "0" * 32 + "/history")[0] == 200  # a member id: its trail
    status, body = call(context, "POST", "/admin/members/unmerge", {"member": "email:nobody@example.com"})
    assert (status, body["error"]) == (404, "not_found")
    status, body = call(context, "GET", "/admin/elsewhere")
    assert (status, body["error"]) == (404, "no_route")
    assert call(context, "DELETE", "/admin/members/merge")[0] == 404
    # A GET of a POST route is not read as a lookup of an identity called "merge".
    status, body = call(context, "GET", "/admin/members/merge")
    assert (status, body["error"], body["message"]) == (405, "method_not_allowed", "/admin/members/merge takes POST")


def test_merge_then_unmerge_through_the_api_is_audited_with_the_caller(admin, clock, context):
    ana, bo = two_people(admin, clock)

    status, merged = call(
        context, "POST", "/admin/members/merge", {"member": "github:902", "into": ana, "why": "same"}, actor="jane"
    )
    assert status == 200 and merged["member_id"] == ana and merged["absorbed"] == bo
    assert merged["score"] == pytest.approx(ANA + BO, abs=1e-4)
    # An account id with a slash, percent-encoded in the path as API Gateway passes it on.
    status, shown = call(context, "GET", "/admin/members/discourse%3Aforum.example.com%2F31")
    assert status == 200 and shown["member_id"] == ana
    assert {ana, bo} <= {m["member_id"] for m in shown["members"]}  # with Ana's forum member, merged by email

    status, undone = call(context, "POST", "/admin/members/unmerge", {"member": bo, "why": "two people"})
    assert status == 200 and undone["was_merged_into"]["member_id"] == ana
    assert score(admin, bo) == pytest.approx(BO, abs=1e-9) and score(admin, ana) == pytest.approx(ANA, abs=1e-9)

    status, history = call(context, "GET", f"/admin/members/{bo}/history")
    entries = [e for e in history["entries"] if e["action"] in ("merged", "unmerged")]
    assert [(e["action"], e["actor"]) for e in entries] == [("merged", "api:jane"), ("unmerged", "api:admin")]
    assert entries[0]["details"][bo]["why"] == "same"
    status, again = call(context, "POST", "/admin/members/unmerge", {"member": bo})
    assert status == 400 and again["error"] == "identity_error" and "not merged" in again["message"]


def test_link_and_unlink_move_an_account_with_its_points(admin, clock, context):
    ana, bo = two_people(admin, clock)
    github(admin, "pull_request", pull_request(7, "bo-alt", 907, iso(clock, 4)))
    link = {"member": bo, "identity": "github:907"}

    status, linked = call(context, "POST", "/admin/identities/link", link, actor="crm")
    assert status == 200 and linked["linked"] == "github:907"
    assert score(admin, bo) == pytest.approx(BO + decayed(20, 90, 4), abs=1e-9)

    status, unlinked = call(context, "POST", "/admin/identities/unlink", link)
    assert status == 200 and score(admin, unlinked["new_member_id"]) == pytest.approx(decayed(20, 90, 4), abs=1e-9)
    status, body = call(context, "POST", "/admin/identities/link", {"member": bo, "identity": ana})
    assert status == 400 and "'identity'" in body["message"]  # a member id is merged, not linked


def test_suggestions_list_pairs_with_confidence_and_reasons(admin, clock, context):
    user = {"user": {"id": 50, "username": "tortega", "name": "Tomas Ortega"}}
    discourse(admin, "user_created", "user", user)
    forum = admin.store.member_for_key("account#discourse:forum.example.com/50")
    gh = github(admin, "pull_request", pull_request(9, "tortega", 904, iso(clock, 2)))["member_id"]

    status, body = call(context, "GET", "/admin/identities/suggestions")

    assert status == 200
    (found,) = body["suggestions"]
    assert {found["first"], found["second"]} == {forum, gh} and found["confidence"] == pytest.approx(0.5)
    (reason,) = found["reasons"]
    assert reason["rule"] == "same_handle" and reason["text"].startswith("same handle 'tortega' on ")


def test_forget_clears_the_outbox_crm_then_erases_the_person(admin, clock, context, tmp_path):
    ana, bo = two_people(admin, clock)

    status, report = call(context, "POST", "/admin/forget", {"identity": "email:ana@example.com"}, actor="dpo")

    assert status == 200 and report["crm"] == "cleared" and report["events"] == 3  # PR, push, answer
    cleared = json.loads((tmp_path / "outbox.jsonl").read_text().splitlines()[-1])
    assert cleared["cleared"] is True and "ana@example.com" in cleared["emails"]
    assert call(context, "GET", "/admin/members/email%3Aana%40example.com")[0] == 404
    (entry,) = [e for e in admin.store.audit.history(ana) if e["action"] == "forgotten"]
    assert entry["actor"] == "api:dpo"
    assert score(admin, bo) == pytest.approx(BO, abs=1e-9)


def test_forget_stops_with_502_when_the_crm_does_not_clear(admin, clock, context, monkeypatch):
    ana, _ = two_people(admin, clock)
    refusing = SimpleNamespace(clear=lambda people: SimpleNamespace(pushed=set(), failed={ana: "HubSpot said 503"}))
    monkeypatch.setattr(identity_admin._deps, "crm", lambda: refusing)

    status, body = call(context, "POST", "/admin/forget", {"identity": ana})

    assert status == 502 and body["error"] == "crm_failed" and "HubSpot said 503" in body["message"]
    assert admin.store.get_member(ana) is not None  # nothing was deleted
