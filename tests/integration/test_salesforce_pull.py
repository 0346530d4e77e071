"""Salesforce inbound: changed Contacts and won Opportunities come back as outcomes linked to members.

DynamoDB is the moto server; Salesforce is the mock transport of tests/unit/test_salesforce.py, answering
SOQL with `{totalSize, done, nextRecordsUrl, records}` pages whose records carry `attributes`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from engagement.adapters.outcomes import OutcomeStore
from engagement.adapters.sync_state import SyncStore
from engagement.domain.activity import Account
from engagement.handlers import salesforce_pull
from engagement.settings import SalesforceSettings
from tests.unit.test_salesforce import CREATE_PATH, DATA, FakeSalesforce, salesforce

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
C1, C2, C3, C4 = "003xx0000000101AAA", "003xx0000000102AAA", "003xx0000000103AAA", "003xx0000000104AAA"
A1, A2 = "001xx0000000201AAA", "001xx0000000202AAA"
O1, O2 = "006xx0000000301AAA", "006xx0000000302AAA"


def contact(record_id: str, email: str, ext: str | None, modified: str, account: str | None, account_type: str | None):
    return {
        "attributes": {"type": "Contact", "url": f"{DATA}/sobjects/Contact/{record_id}"},
        "Id": record_id,
        "Email": email,
        "LastModifiedDate": modified,
        "Community_Member_Id__c": ext,
        "Account": (
            {"attributes": {"type": "Account", "url": f"{DATA}/sobjects/Account/{account}"}, "Type": account_type}
            if account
            else None
        ),
        "AccountId": account,
    }


def opportunity(record_id: str, contact_id: str | None, account: str, amount: float, close: str, modified: str):
    return {
        "attributes": {"type": "Opportunity", "url": f"{DATA}/sobjects/Opportunity/{record_id}"},
        "Id": record_id,
        "Amount": amount,
        "CloseDate": close,
        "AccountId": account,
        "ContactId": contact_id,
        "StageName": "Closed Won",
        "LastModifiedDate": modified,
    }


def cursors(deps) -> SyncStore:
    return SyncStore(deps.settings, deps.store.client)


@pytest.fixture
def members(deps, clock):
    store = deps.store
    ana = store.resolve(Account("github", "11", "ana", "ana@example.com"), clock.now)
    bo = store.resolve(Account("github", "12", "bo", "bo@example.com"), clock.now)
    cy = store.resolve(Account("discourse", "13", "cy", "cy@example.com"), clock.now)
    return {"ana": ana, "bo": bo, "cy": cy}


def scripted_salesforce(members: dict[str, str]) -> FakeSalesforce:
    fake = FakeSalesforce()
    fake.query_pages = {
        "FROM Contact WHERE LastModifiedDate": [
            {
                "totalSize": 3,
                "done": False,
                "nextRecordsUrl": f"{DATA}/query/01gxx000000MjyQAAS-2000",
                "records": [
                    contact(
                        C1, "ana@example.com", members["ana"], "2026-12-02T08:00:00.000+0000", A1, "Customer - Direct"
                    ),
                    # Created in Salesforce by sales, before we ever pushed: found by its email (any case).
                    contact(C2, "Bo@Example.com", None, "2026-12-02T09:00:00.000+0000", None, None),
                ],
            },
            {
                "totalSize": 3,
                "done": True,
                "records": [contact(C3, "stranger@example.org", None, "2026-12-02T10:00:00.000+0000", A1, "Prospect")],
            },
        ],
        "FROM Opportunity": [
            {
                "totalSize": 2,
                "done": True,
                "records": [
                    opportunity(O1, C1, A1, 25000.0, "2026-11-28", "2026-12-02T09:30:00.000+0000"),
                    opportunity(O2, None, A2, 1200.5, "2026-12-01", "2026-12-02T07:00:00.000+0000"),
                ],
            }
        ],
        "FROM Contact WHERE AccountId IN": [
            {
                "totalSize": 1,
                "done": True,
                "records": [
                    contact(C4, "cy@example.com", members["cy"], "2026-10-01T07:00:00.000+0000", A2, "Customer")
                ],
            }
        ],
    }
    return fake


def test_outcomes_flow_back_and_link_to_members(deps, members):
    fake = scripted_salesforce(members)
    crm = salesforce(fake)
    outcomes = OutcomeStore(deps.settings, deps.store.client)

    summary = salesforce_pull.pull(crm, deps.store, outcomes, cursors(deps), SalesforceSettings.from_env({}), NOW)

    assert summary.since == "2026-11-03T12:00:00Z"  # first run: 30 days back
    assert (summary.people, summary.opportunities, summary.outcomes) == (3, 2, 4)
    assert (summary.linked_by_external_id, summary.linked_by_email, summary.unlinked) == (2, 1, 1)
    assert summary.unlinked_ids == [C3]
    assert summary.stamped == 1
    assert summary.high_water_mark == "2026-12-02T10:00:00Z"
    assert summary.calls == 5  # two contact pages, opportunities, the deal's account contacts, one stamp update

    ana = {o["outcome_id"]: o for o in outcomes.outcomes_of(members["ana"])}
    assert ana[f"salesforce:contact:{C1}"] == {
        "member_id": members["ana"],
        "outcome_id": f"salesforce:contact:{C1}",
        "crm": "salesforce",
        "kind": "status",
        "customer_status": "Customer - Direct",
        "contact_id": C1,
        "company_id": A1,
        "updated_at": "2026-12-02T08:00:00.000+00:00",
    }
    deal = ana[f"salesforce:opportunity:{O1}"]
    assert deal["kind"] == "deal"
    assert deal["amount"] == Decimal("25000")
    assert deal["close_date"] == "2026-11-28"
    assert (deal["contact_id"], deal["company_id"]) == (C1, A1)
    assert deal["lifecycle_stage"] == "Closed Won"

    bo = outcomes.outcomes_of(members["bo"])
    assert [o["outcome_id"] for o in bo] == [f"salesforce:contact:{C2}"]
    # The contact found by email now carries the member id, so the next upsert updates it, not a duplicate.
    stamp = json.loads(fake.data_requests("PATCH", CREATE_PATH)[0].content)
    assert stamp == {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Contact"}, "Id": C2, "Community_Member_Id__c": members["bo"]}],
    }

    cy = outcomes.outcomes_of(members["cy"])
    assert len(cy) == 1
    assert cy[0]["outcome_id"] == f"salesforce:opportunity:{O2}"
    assert cy[0]["amount"] == Decimal("1200.5")
    assert (cy[0]["contact_id"], cy[0]["company_id"]) == (C4, A2)

    # The SOQL asked for what the outcomes need, oldest change first.
    people_soql = fake.data_requests("GET")[0].url.params["q"]
    assert people_soql == (
        "SELECT Id, Email, LastModifiedDate, Community_Member_Id__c, Account.Type, AccountId FROM Contact "
        "WHERE LastModifiedDate >= 2026-11-03T12:00:00Z ORDER BY LastModifiedDate ASC, Id ASC"
    )
    assert fake.data_requests("GET")[1].url.path == f"{DATA}/query/01gxx000000MjyQAAS-2000"


def test_the_next_run_starts_at_the_high_water_mark_less_the_overlap(deps, members):
    fake = scripted_salesforce(members)
    crm = salesforce(fake)
    outcomes = OutcomeStore(deps.settings, deps.store.client)
    settings = SalesforceSettings.from_env({})
    salesforce_pull.pull(crm, deps.store, outcomes, cursors(deps), settings, NOW)
    first_items = {o["outcome_id"]: o for o in outcomes.outcomes_of(members["ana"])}

    fake.requests.clear()
    again = salesforce_pull.pull(crm, deps.store, outcomes, cursors(deps), settings, NOW)

    assert again.since == "2026-12-02T09:55:00Z"
    assert "LastModifiedDate >= 2026-12-02T09:55:00Z" in fake.data_requests("GET")[0].url.params["q"]
    # The same records seen again overwrite their items: nothing is added.
    assert {o["outcome_id"]: o for o in outcomes.outcomes_of(members["ana"])} == first_items
    assert again.stamped == 1  # the fake keeps no stamp between runs of its scripted pages; Salesforce would


def test_a_failed_query_leaves_the_mark_and_the_table_untouched(deps, members):
    import httpx

    fake = scripted_salesforce(members)
    fake.script = [None, None, httpx.Response(400, json=[{"errorCode": "INVALID_FIELD", "message": "No such column"}])]
    outcomes = OutcomeStore(deps.settings, deps.store.client)
    with pytest.raises(Exception, match="INVALID_FIELD"):
        salesforce_pull.pull(
            salesforce(fake), deps.store, outcomes, cursors(deps), SalesforceSettings.from_env({}), NOW
        )
    assert cursors(deps).cursor(salesforce_pull.CURSOR) is None
    assert outcomes.outcomes_of(members["ana"]) == []


def test_lead_mode_reads_the_lead_status_as_lifecycle_stage(deps, members):
    fake = FakeSalesforce()
    lead = {
        "attributes": {"type": "Lead", "url": f"{DATA}/sobjects/Lead/00Qxx0000000401AAA"},
        "Id": "00Qxx0000000401AAA",
        "Email": "ana@example.com",
        "LastModifiedDate": "2026-12-02T08:00:00.000+0000",
        "Community_Member_Id__c": members["ana"],
        "Status": "Working - Contacted",
    }
    fake.query_pages = {"FROM Lead WHERE": [{"totalSize": 1, "done": True, "records": [lead]}]}
    outcomes = OutcomeStore(deps.settings, deps.store.client)
    settings = SalesforceSettings.from_env({"SALESFORCE_OBJECT": "Lead"})
    summary = salesforce_pull.pull(
        salesforce(fake, SALESFORCE_OBJECT="Lead"), deps.store, outcomes, cursors(deps), settings, NOW
    )
    assert summary.outcomes == 1
    (item,) = outcomes.outcomes_of(members["ana"])
    assert item["outcome_id"] == "salesforce:lead:00Qxx0000000401AAA"
    assert item["lifecycle_stage"] == "Working - Contacted"
    assert "customer_status" not in item


# The handler -------------------------------------------------------------------------------


def scheduled_event() -> dict[str, Any]:
    from tests.conftest import EVENTS

    return json.loads((EVENTS / "salesforce-pull.scheduled.json").read_text())


def test_handler_refuses_anything_but_a_scheduled_event(context):
    with pytest.raises(salesforce_pull.NotAScheduledEvent, match="scheduled event"):
        salesforce_pull.lambda_handler({"Records": []}, context)


def test_handler_without_credentials_says_so(context, monkeypatch):
    monkeypatch.delenv("SALESFORCE_CREDENTIALS", raising=False)
    monkeypatch.delenv("SALESFORCE_CREDENTIALS_ARN", raising=False)
    answer = salesforce_pull.lambda_handler(scheduled_event(), context)
    assert answer["status"] == "not_configured"


def test_handler_pulls_with_the_configured_adapter(deps, members, context, monkeypatch):
    monkeypatch.setenv("SALESFORCE_CREDENTIALS", '{"login_url": "https://acme.my.salesforce.com"}')
    fake = scripted_salesforce(members)
    monkeypatch.setattr(salesforce_pull, "_crm", salesforce(fake))
    answer = salesforce_pull.lambda_handler(scheduled_event(), context)
    assert (answer["status"], answer["outcomes"], answer["unlinked"]) == ("pulled", 4, 1)


def test_a_record_with_an_unusable_value_is_skipped_not_fatal(deps, members):
    fake = scripted_salesforce(members)
    fake.query_pages["FROM Opportunity"][0]["records"][0]["LastModifiedDate"] = "yesterday"
    outcomes = OutcomeStore(deps.settings, deps.store.client)
    summary = salesforce_pull.pull(
        salesforce(fake), deps.store, outcomes, cursors(deps), SalesforceSettings.from_env({}), NOW
    )
    assert (summary.skipped, summary.outcomes) == (1, 3)
    assert [o["outcome_id"] for o in outcomes.outcomes_of(members["ana"])] == [f"salesforce:contact:{C1}"]


def test_engagement_salesforce_pull_runs_against_the_local_stack(deps, members, monkeypatch):
    from typer.testing import CliRunner

    from engagement.adapters import salesforce as adapter_module
    from engagement.local.cli import app

    fake = scripted_salesforce(members)
    monkeypatch.setenv("SALESFORCE_CREDENTIALS", '{"login_url": "https://acme.my.salesforce.com"}')
    monkeypatch.setattr(adapter_module, "salesforce_from_env", lambda: salesforce(fake))
    result = CliRunner().invoke(app, ["salesforce", "pull"])
    assert result.exit_code == 0, result.output
    assert "Pulled 3 contacts and 2 won opportunities" in result.output
    assert "4 outcomes stored, 5 Salesforce calls" in " ".join(result.output.split())
    outcomes = OutcomeStore(deps.settings, deps.store.client)
    assert len(outcomes.outcomes_of(members["ana"])) == 2
