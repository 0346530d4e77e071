"""Identity resolution against a real DynamoDB endpoint (moto server): links, merges, unmerges, forgetting.

Expected scores are written from the spec's definition: each action's points halve every half-life, so
20 points (pull request, 90 days) 10 days old are worth 20 * 2^(-10/90), and so on.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
from datetime import timedelta

import pytest

from engagement.adapters.identity_store import IdentityStore
from engagement.domain.identity import IdentityError, parse_ref
from engagement.domain.signature_schemes import slack_signature
from engagement.domain.taxonomy import build
from engagement.handlers import discourse_webhook, github_webhook, ingest, slack_webhook
from tests.conftest import SECRET, discourse_headers, github_headers, github_push, response_json, rest_event

TAX = build()
DAY = 86_400


def decayed(points: float, half_life_days: float, age_days: float) -> float:
    return points * math.pow(2.0, -age_days / half_life_days)


def iso(clock, days_ago: float) -> str:
    return (clock.now - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")


def github(deps, event: str, payload: dict) -> dict:
    body = json.dumps(payload).encode()
    return response_json(ingest.handle(github_webhook.PLATFORM, rest_event(body, github_headers(event, body)), deps))


def discourse(deps, event: str, event_type: str, payload: dict) -> dict:
    body = json.dumps(payload).encode()
    event_data = rest_event(body, discourse_headers(event, event_type, body), path="/webhooks/discourse")
    return response_json(ingest.handle(discourse_webhook.PLATFORM, event_data, deps))


def slack(deps, clock, payload: dict) -> dict:
    body = json.dumps(payload).encode()
    timestamp = str(int(clock.now.timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(SECRET, timestamp, body),
    }
    return response_json(ingest.handle(slack_webhook.PLATFORM, rest_event(body, headers, path="/webhooks/slack"), deps))


def pull_request(number: int, login: str, user_id: int, created_at: str) -> dict:
    user = {"login": login, "id": user_id, "type": "User"}
    return {
        "action": "opened",
        "number": number,
        "pull_request": {
            "id": 9000 + number,
            "number": number,
            "title": "A fix",
            "created_at": created_at,
            "user": user,
        },
        "repository": {"id": 1, "full_name": "acme/sdk"},
        "sender": user,
    }


def discourse_answer(post_id: int, user_id: int, username: str, created_at: str) -> dict:
    return {
        "post": {
            "id": post_id,
            "user_id": user_id,
            "username": username,
            "post_number": 2,
            "post_type": 1,
            "topic_id": 70 + post_id,
            "created_at": created_at,
        }
    }


def slack_join(user: str, email: str, name: str) -> dict:
    return {
        "team_id": "T0AURORA",
        "type": "event_callback",
        "event_id": f"Ev{user}",
        "event_time": 1796040000,
        "event": {
            "type": "team_join",
            "user": {"id": user, "is_bot": False, "profile": {"email": email, "real_name": name}},
        },
    }


@pytest.fixture
def people(deps, monkeypatch):
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    return IdentityStore(deps.store)


def roots(deps) -> list[dict]:
    return [m for m in deps.store.scan_members() if not m.get("merged_into")]


def test_one_person_on_github_discourse_and_slack_is_one_member(deps, clock, people):
    # Given: a pull request on GitHub (no email), a push revealing the account's address in mixed case,
    # a Discourse account created with the GitHub noreply address, an answer there, and a Slack account
    # whose workspace email differs only in case and spaces.
    pr = github(deps, "pull_request", pull_request(1, "priya-builds", 583231, iso(clock, 10)))
    github(deps, "push", github_push("priya-builds", 583231, "Priya.Raman@Example.COM"))
    user = {"user": {"id": 7, "username": "priya", "email": "583231+Priya-Builds@users.noreply.github.com"}}
    joined = discourse(deps, "user_created", "user", user)
    answer = discourse(deps, "post_created", "post", discourse_answer(1, 7, "priya", iso(clock, 3)))
    on_slack = slack(deps, clock, slack_join("U0PRIYA01", "  priya.raman@EXAMPLE.com ", "Priya Raman"))

    # Then: one member holds all three accounts, and its score is both scored actions decayed to now.
    member_id = pr["member_id"]
    assert joined["member_id"] == answer["member_id"] == on_slack["member_id"] == member_id
    assert len(roots(deps)) == 1
    member = deps.store.get_member(member_id)
    assert member["accounts"] == {"github:583231", "discourse:forum.example.com/7", "slack:U0PRIYA01"}
    assert member["email"] == "priya.raman@example.com"
    expected = decayed(20, 90, 10) + decayed(10, 30, 3)
    assert float(member["score"]) == pytest.approx(expected, abs=1e-9)
    shown = people.show(parse_ref("slack:U0PRIYA01"))
    assert shown["member_id"] == member_id and shown["status"] == "prospect"
    created = [e for e in people.history(parse_ref(member_id)) if e["action"] in ("created", "linked")]
    assert {e["rule"] for e in created} == {"first_seen", "github_noreply", "verified_email"}


def two_people(deps, clock) -> tuple[str, str]:
    """Ana (GitHub PR 10 days ago, Discourse answer 2 days ago) and Bo (GitHub PR 40 days ago)."""
    ana = github(deps, "pull_request", pull_request(1, "octo-ana", 901, iso(clock, 10)))["member_id"]
    user = {"user": {"id": 31, "username": "ana", "email": "ana@example.com"}}
    discourse(deps, "user_created", "user", user)
    github(deps, "push", github_push("octo-ana", 901, "ana@example.com"))
    discourse(deps, "post_created", "post", discourse_answer(1, 31, "ana", iso(clock, 2)))
    bo = github(deps, "pull_request", pull_request(2, "bo-dev", 902, iso(clock, 40)))["member_id"]
    # Ana's GitHub and Discourse members were merged by the verified-email rule: she is the root of both.
    return deps.store.root_of(ana), bo


ANA = decayed(20, 90, 10) + decayed(10, 30, 2)
BO = decayed(20, 90, 40)


def test_a_wrong_merge_is_undone_exactly_with_events_that_arrived_meanwhile(deps, clock, people):
    ana, bo = two_people(deps, clock)
    assert float(deps.store.get_member(ana)["score"]) == pytest.approx(ANA, abs=1e-9)

    # When: an operator merges Bo into Ana by mistake, and both act while merged.
    merged = people.merge(parse_ref(bo), parse_ref(ana), "operator:test", clock.now, TAX, why="looked alike")
    assert merged["member_id"] == ana
    assert float(deps.store.get_member(ana)["score"]) == pytest.approx(ANA + BO, abs=1e-9)
    bo_item = deps.store.get_member(bo)
    assert bo_item["merged_into"] == ana and bo_item["tier"] == "Merged"
    late_bo = github(deps, "pull_request", pull_request(3, "bo-dev", 902, iso(clock, 1)))
    late_ana = discourse(deps, "post_created", "post", discourse_answer(2, 31, "ana", iso(clock, 0.5)))
    assert late_bo["member_id"] == late_ana["member_id"] == ana
    both = ANA + BO + decayed(20, 90, 1) + decayed(10, 30, 0.5)
    assert float(deps.store.get_member(ana)["score"]) == pytest.approx(both, abs=1e-9)

    # Then: unmerging gives each exactly what they would have had without the merge.
    undone = people.unmerge(parse_ref(bo), "operator:test", clock.now, TAX, why="different people")
    assert undone["was_merged_into"]["member_id"] == ana
    ana_item, bo_item = deps.store.get_member(ana), deps.store.get_member(bo)
    assert float(bo_item["score"]) == pytest.approx(BO + decayed(20, 90, 1), abs=1e-9)
    assert float(ana_item["score"]) == pytest.approx(ANA + decayed(10, 30, 0.5), abs=1e-9)
    assert bo not in (ana_item.get("parts") or {}) and "merged_into" not in bo_item
    assert bo_item["tier"] == TAX.tier_for(BO + decayed(20, 90, 1))
    assert bo_item["last_activity_at"] == iso(clock, 1).replace("Z", "+00:00")
    # and the pair is kept apart from automatic rules; the trail has both operations with their reasons.
    history = people.history(parse_ref(bo))
    assert [e["action"] for e in history if e["action"] in ("merged", "unmerged")] == ["merged", "unmerged"]
    assert history[-1]["details"][bo]["why"] == "different people" and history[-1]["actor"] == "operator:test"


def test_nested_merges_unmerge_with_what_came_in_through_them(deps, clock, people):
    ana, bo = two_people(deps, clock)
    cy = github(deps, "pull_request", pull_request(4, "cy", 903, iso(clock, 5)))["member_id"]
    people.merge(cy, bo, "operator:test", clock.now, TAX)  # Cy into Bo
    people.merge(bo, ana, "operator:test", clock.now, TAX)  # then Bo (with Cy) into Ana
    parts = deps.store.get_member(ana)["parts"]
    assert (parts[bo], parts[cy]) == (bo, f"{bo}/{cy}")
    assert float(deps.store.get_member(ana)["score"]) == pytest.approx(ANA + BO + decayed(20, 90, 5), abs=1e-9)

    undone = people.unmerge(bo, "operator:test", clock.now, TAX)
    assert undone["parts"] == [cy]
    assert float(deps.store.get_member(bo)["score"]) == pytest.approx(BO + decayed(20, 90, 5), abs=1e-9)
    assert deps.store.get_member(cy)["merged_into"] == bo
    assert float(deps.store.get_member(ana)["score"]) == pytest.approx(ANA, abs=1e-9)


def test_merging_one_member_twice_or_unmerging_a_root_is_refused(deps, clock, people):
    ana, bo = two_people(deps, clock)
    people.merge(bo, ana, "operator:test", clock.now, TAX)
    with pytest.raises(IdentityError, match="already one member"):
        people.merge(parse_ref("github:902"), parse_ref(ana), "operator:test", clock.now, TAX)
    with pytest.raises(IdentityError, match="not merged"):
        people.unmerge(ana, "operator:test", clock.now, TAX)
    with pytest.raises(IdentityError, match="no member has"):
        people.merge(parse_ref("github:404"), parse_ref(ana), "operator:test", clock.now, TAX)


def test_an_unmerged_pair_is_not_merged_again_by_an_automatic_rule(deps, clock, people):
    ana, bo = two_people(deps, clock)
    people.merge(bo, ana, "operator:test", clock.now, TAX)
    people.unmerge(bo, "operator:test", clock.now, TAX)
    # Bo's Slack account now shows Ana's verified address: normally that links, but the pair was kept apart.
    slack(deps, clock, slack_join("U0BO", "bo@example.com", "Bo"))
    people.link(parse_ref(bo), parse_ref("email:bo@example.com"), "operator:test", clock.now, TAX, None)
    github(deps, "push", github_push("bo-dev", 902, "ana@example.com"))
    assert "merged_into" not in deps.store.get_member(bo)


def test_link_moves_an_account_with_exactly_its_points_and_unlink_takes_them_back(deps, clock, people):
    ana, bo = two_people(deps, clock)
    # Bo's Discourse account (one answer, 4 days ago) was created on its own.
    discourse(deps, "post_created", "post", discourse_answer(3, 32, "bo", iso(clock, 4)))
    bo_forum = deps.store.member_for_key("account#discourse:forum.example.com/32")
    assert bo_forum not in (ana, bo)

    people.link(parse_ref(bo), parse_ref("discourse:forum.example.com/32"), "operator:test", clock.now, TAX, "same")
    assert float(deps.store.get_member(bo)["score"]) == pytest.approx(BO + decayed(10, 30, 4), abs=1e-9)
    assert float(deps.store.get_member(bo_forum)["score"]) == pytest.approx(0.0, abs=1e-9)

    result = people.unlink(
        parse_ref(bo), parse_ref("discourse:forum.example.com/32"), "operator:test", clock.now, TAX, None
    )
    split = result["new_member_id"]
    assert float(deps.store.get_member(split)["score"]) == pytest.approx(decayed(10, 30, 4), abs=1e-9)
    assert float(deps.store.get_member(bo)["score"]) == pytest.approx(BO, abs=1e-9)
    # A later answer from that account lands on the split-off member.
    discourse(deps, "post_created", "post", discourse_answer(4, 32, "bo", iso(clock, 1)))
    assert float(deps.store.get_member(split)["score"]) == pytest.approx(
        decayed(10, 30, 4) + decayed(10, 30, 1), abs=1e-9
    )
    with pytest.raises(IdentityError, match="only account"):
        people.unlink(
            parse_ref(split), parse_ref("discourse:forum.example.com/32"), "operator:test", clock.now, TAX, None
        )


def test_concurrent_events_during_a_merge_are_neither_lost_nor_double_counted(deps, clock, people):
    ana, bo = two_people(deps, clock)
    expected = ANA + BO
    ages = [0.1 * (i + 1) for i in range(16)]
    expected += sum(decayed(20, 90, age) for age in ages)

    def send(i: int) -> None:
        login, user_id = ("octo-ana", 901) if i % 2 else ("bo-dev", 902)
        github(deps, "pull_request", pull_request(100 + i, login, user_id, iso(clock, ages[i])))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for thread in threads[:8]:
        thread.start()
    people.merge(bo, ana, "operator:test", clock.now, TAX)
    for thread in threads[8:]:
        thread.start()
    for thread in threads:
        thread.join()

    deps.store.refresh(ana, clock.now, TAX)
    root = deps.store.get_member(ana)
    assert int(root["events_total"]) == 4 + 16  # Ana's PR, push and answer, Bo's PR, then the 16 new ones
    assert float(root["score"]) == pytest.approx(expected, abs=1e-9)


def test_suggestions_list_their_reasons_and_merge_only_by_enabled_rules(deps, clock, people):
    # Two members with the same name at one company domain and the same handle on two platforms.
    body = {"user": {"id": 50, "username": "tortega", "name": "Tomas Ortega", "email": "tomas@acme.io"}}
    discourse(deps, "user_created", "user", body)
    slack(deps, clock, slack_join("U0TOMAS", "t.ortega@acme.io", "Tomas Ortega"))
    github(deps, "pull_request", pull_request(9, "tortega", 904, iso(clock, 2)))
    found = people.suggestions(TAX.identity)
    rules = {frozenset(s.rules) for s in found}
    assert frozenset({"same_name_and_domain"}) in rules and frozenset({"same_handle"}) in rules
    name_pair = next(s for s in found if "same_name_and_domain" in s.rules)
    assert name_pair.confidence == pytest.approx(0.7)
    assert "acme.io" in name_pair.reasons[0].text and "tomas ortega" in name_pair.reasons[0].text
    # Nothing merges while no rule is enabled; enabling one merges just its pairs.
    from dataclasses import replace

    assert people.apply_suggestions(TAX.identity, clock.now, TAX) == []
    policy = replace(TAX.identity, auto_merge_rules=frozenset({"same_handle"}))
    merged = people.apply_suggestions(policy, clock.now, TAX)
    assert [s.rules for s in merged] == [frozenset({"same_handle"})]
    assert len(roots(deps)) == 2


def readable_text(value) -> str:
    """Everything a reader of a DynamoDB item could read: its strings and numbers, gzip bodies decompressed.

    Other binary values are the audit log's sealed details, ciphertext under a member's key (what becomes of them
    when the key is erased is asserted separately); their bytes are random and would match a short trace by chance.
    """
    if isinstance(value, dict):
        return " ".join(f"{k} {readable_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(readable_text(v) for v in value)
    if isinstance(value, bytes):
        try:
            return gzip.decompress(value).decode("utf-8", "replace")
        except (OSError, EOFError):
            return ""
    return str(value)


def test_forgetting_a_person_leaves_no_trace_in_any_table(deps, clock, people, tmp_path):
    from engagement.adapters.outbox import Outbox
    from engagement.domain.outcomes import Outcome

    ana, bo = two_people(deps, clock)
    slack(deps, clock, slack_join("U0ANA", "ana@example.com", "Ana Lima"))
    from engagement.adapters.outcomes import OutcomeStore

    OutcomeStore(deps.settings, deps.store.client).put_outcomes(
        [Outcome(ana, "hubspot", "contact", "501", "status", "2026-11-30T00:00:00Z", lifecycle_stage="customer")]
    )
    people.merge(bo, ana, "operator:test", clock.now, TAX)
    people.unmerge(bo, "operator:test", clock.now, TAX)
    outbox = Outbox(str(tmp_path / "outbox.jsonl"))

    report = people.forget(parse_ref("email:ana@example.com"), "operator:test", clock.now, crm=outbox)

    assert report.crm == "cleared" and report.events == 4  # PR, push, answer, Slack join
    traces = [
        "ana@example.com",
        "octo-ana",
        "github:901",
        "U0ANA",
        "forum.example.com/31",
        "Ana Lima",
        "hubspot:contact:501",
    ]
    client = deps.store.client
    for name in client.list_tables()["TableNames"]:
        for page in client.get_paginator("scan").paginate(TableName=name):
            for item in page["Items"]:
                text = readable_text(item)
                for trace in traces:
                    assert trace not in text, f"{trace!r} left in {name}: {text[:300]}"
                if ana in text:
                    assert name == deps.settings.audit_table, f"member id left in {name}"
    # The audit trail still says what happened to the member id, and nothing about the person.
    history = people.audit.history(ana)
    assert history[-1]["action"] == "forgotten" and history[-1]["facts"]["events"] == 4
    assert all(e["details"][ana] == "sealed with a key that was erased (the member was forgotten)" for e in history)
    # Bo is untouched.
    assert float(deps.store.get_member(bo)["score"]) == pytest.approx(BO, abs=1e-9)
    cleared = json.loads((tmp_path / "outbox.jsonl").read_text().splitlines()[-1])
    assert cleared["cleared"] is True and "ana@example.com" in cleared["emails"]


def test_import_links_rows_into_one_member(deps, clock, people):
    from engagement.domain.identity import parse_links_csv

    ana, bo = two_people(deps, clock)
    rows, errors = parse_links_csv(
        "email,github_login,slack,note\n"
        "ana@example.com,,U0ANA9,badge scan at the meetup\n"
        "nobody@example.com,,,\n"
        ",bo-dev,U0BO9,\n"
    )
    assert errors == ["line 3: needs two identities or more to link"]
    summary = people.import_rows(rows, "operator:test", clock.now, TAX)
    assert summary["linked"] == 2 and summary["errors"] == []
    slack(deps, clock, {**slack_join("U0ANA9", "x@example.net", "Ana"), "event_id": "EvNew"})
    assert deps.store.member_for_key("account#slack:U0ANA9") == ana
    assert deps.store.member_for_key("account#slack:U0BO9") == bo


def test_a_profile_field_naming_a_github_login_links_the_forum_account(deps, clock, people):
    # The operator says Discourse user field 1 holds the person's GitHub login.
    deps.taxonomy = lambda: build({"identity": {"profile_fields": {"discourse": {"1": "github"}}}})
    gh = github(deps, "pull_request", pull_request(5, "Lena-F", 905, iso(clock, 3)))
    user = {"user": {"id": 60, "username": "lena", "user_fields": {"1": "@lena-f"}}}
    answer = discourse(deps, "user_created", "user", user)
    assert answer["member_id"] == gh["member_id"]
    assert deps.store.member_for_key("account#discourse:forum.example.com/60") == gh["member_id"]
    # With the rule switched off, the same profile links nothing.
    deps.taxonomy = lambda: build(
        {"identity": {"profile_fields": {"discourse": {"1": "github"}}, "auto_links": ["verified_email"]}}
    )
    other = discourse(
        deps, "user_created", "user", {"user": {"id": 61, "username": "l2", "user_fields": {"1": "lena-f"}}}
    )
    assert other["member_id"] != gh["member_id"]


def test_an_sso_subject_links_accounts_and_a_shared_one_merges_members(deps, clock, people):
    from engagement.domain.activity import Account

    store = deps.store
    first = store.resolve(Account("circle", "c1", "ana", sso_subject="auth0|ana"), clock.now, TAX.identity)
    second = store.resolve(Account("events", "form/ana", "ana", sso_subject="auth0|ana"), clock.now, TAX.identity)
    assert first == second
    # An existing member that later shows the same subject is merged by the rule.
    third = store.resolve(Account("slack", "U0ANA", "ana"), clock.now, TAX.identity)
    store.resolve(Account("slack", "U0ANA", "ana", sso_subject="auth0|ana"), clock.now, TAX.identity)
    assert store.root_of(third) == store.root_of(first)


def test_an_unverified_email_links_nothing_and_is_suggested(deps, clock, people):
    from engagement.domain.activity import Account

    store = deps.store
    owner = store.resolve(Account("discourse", "f/1", "ana", email="ana@example.com"), clock.now, TAX.identity)
    guess = store.resolve(
        Account("events", "blog/9", "ana", email="ana@example.com", email_verified=False), clock.now, TAX.identity
    )
    assert guess != owner and store.root_of(guess) != store.root_of(owner)
    store.refresh(owner, clock.now, TAX)
    store.refresh(guess, clock.now, TAX)
    (suggestion,) = [s for s in people.suggestions(TAX.identity) if "unverified_email" in s.rules]
    assert {suggestion.first, suggestion.second} == {owner, guess}
