"""Forgetting a person in the CRM: HubSpot batch update by email, Salesforce lookup then update by Id, the outbox.

Answers are written as the vendors document them. HubSpot: batch update answers 200 `{status, results,
startedAt, completedAt}` when every input landed and 207 with `errors` (`status`, `category`, `message`,
`context`, `errors`) and `numErrors` when some did not; an email with no contact is an `OBJECT_NOT_FOUND` error
naming it in `context.ids` (../shared/samples/hubspot/contacts.batch_update.response.207.docs-example.json).
Salesforce: SOQL pages `{totalSize, done, records}` with each record's `attributes`, and sObject Collections
update answering 200 with one `{id, success, errors}` per record, `errors[].statusCode` on a refused one.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
import stamina

from engagement.adapters.outbox import Outbox
from engagement.domain.crm import Forgotten
from tests.hubspot_fake import STAMP, FakeHubSpot, FakeTime, error_response, rate_limited, server_error
from tests.unit.test_hubspot_outbound import hubspot
from tests.unit.test_salesforce import DATA, INSTANCE, UPSERT_PATH, FakeSalesforce, salesforce

UPDATE = "/crm/v3/objects/contacts/batch/update"
CLEARED = {
    "community_score": "",
    "community_tier": "",
    "community_tier_changed_at": "",
    "community_last_activity_at": "",
}
COLLECTIONS = f"{DATA}/composite/sobjects"
NOT_FOUND_MESSAGE = "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid."


@pytest.fixture(autouse=True)
def no_backoff_waits():
    stamina.set_testing(True, attempts=6)
    yield
    stamina.set_testing(False)


class FakeHubSpotByEmail(FakeHubSpot):
    """FakeHubSpot whose batch update also finds contacts by `idProperty: email`, as HubSpot's does."""

    def __init__(self, *args: Any, echo_trace_ids: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.echo_trace_ids = echo_trace_ids

    def _update(self, body: dict[str, Any]) -> httpx.Response:
        results, missing = [], []
        for item in body["inputs"]:
            assert item["idProperty"] == "email"
            contact = self.contacts.get(item["id"])
            if contact is None:
                missing.append(item["id"])
                continue
            contact["properties"].update(item["properties"])
            result = {
                "id": contact["id"],
                "properties": {**item["properties"], "hs_object_id": contact["id"]},
                "archived": False,
                "createdAt": "2026-11-02T09:00:00.000Z",
                "updatedAt": "2026-12-01T12:00:00.150Z",
            }
            if self.echo_trace_ids and item.get("objectWriteTraceId"):
                result["objectWriteTraceId"] = item["objectWriteTraceId"]
            results.append(result)
        if not missing:
            return httpx.Response(200, json={"status": "COMPLETE", "results": results, **STAMP})
        error = {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": NOT_FOUND_MESSAGE,
            "context": {"ids": missing},
            "errors": [],
        }
        return httpx.Response(
            207, json={"status": "COMPLETE", "results": results, "numErrors": 1, "errors": [error], **STAMP}
        )


def with_contacts(*emails: str, **kwargs: Any) -> FakeHubSpotByEmail:
    fake = FakeHubSpotByEmail(**kwargs)
    for n, email in enumerate(emails):
        fake.contacts[email] = {"id": str(501 + n), "properties": {"community_tier": "Champion"}}
    return fake


ANA = Forgotten(key="m-ana", member_ids=("m-ana", "m-ana-2"), emails=(" Ana@Example.com", "ana.work@example.com"))
BEN = Forgotten(key="m-ben", member_ids=("m-ben",), emails=("ben@example.com",))


# HubSpot -----------------------------------------------------------------------------------------


def test_hubspot_clears_two_people_with_three_emails_in_one_update_call():
    fake = with_contacts("ana@example.com", "ana.work@example.com", "ben@example.com")

    result = hubspot(fake).clear([ANA, BEN])

    assert result.pushed == {"m-ana", "m-ben"} and not result.failed and result.calls == 1
    assert fake.paths() == [UPDATE]  # batch update only: no upsert, no create
    (request,) = fake.requests
    assert request.method == "POST"
    inputs = json.loads(request.content)["inputs"]
    assert [i["id"] for i in inputs] == ["ana@example.com", "ana.work@example.com", "ben@example.com"]
    assert all(i["idProperty"] == "email" and i["properties"] == CLEARED for i in inputs)
    assert fake.contacts["ben@example.com"]["properties"]["community_tier"] == ""


def test_hubspot_an_email_without_a_contact_in_a_207_still_counts_as_cleared():
    answer = httpx.Response(
        207,
        json={
            "status": "COMPLETE",
            "results": [
                {
                    "id": "501",
                    "objectWriteTraceId": "clear-0",
                    "properties": {**CLEARED, "hs_object_id": "501"},
                    "archived": False,
                    "createdAt": "2026-11-02T09:00:00.000Z",
                    "updatedAt": "2026-12-01T12:00:00.150Z",
                },
                {
                    "id": "502",
                    "objectWriteTraceId": "clear-2",
                    "properties": {**CLEARED, "hs_object_id": "502"},
                    "archived": False,
                    "createdAt": "2026-11-02T09:00:00.000Z",
                    "updatedAt": "2026-12-01T12:00:00.150Z",
                },
            ],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": NOT_FOUND_MESSAGE,
                    "context": {"ids": ["ana.work@example.com"]},
                    "errors": [],
                }
            ],
            "startedAt": "2026-12-01T12:00:00.000Z",
            "completedAt": "2026-12-01T12:00:00.200Z",
        },
    )
    fake = FakeHubSpotByEmail(faults={0: answer})

    result = hubspot(fake).clear([ANA, BEN])

    assert result.pushed == {"m-ana", "m-ben"} and not result.failed and result.calls == 1


def test_hubspot_207_results_without_trace_ids_are_matched_by_count():
    fake = with_contacts("ana@example.com", "ben@example.com", echo_trace_ids=False)

    result = hubspot(fake).clear([ANA, BEN])

    # ana.work@example.com is not in HubSpot (OBJECT_NOT_FOUND); the two results carry no trace ids.
    assert result.pushed == {"m-ana", "m-ben"} and not result.failed


def test_hubspot_another_error_category_fails_only_that_person_naming_the_contact_by_position():
    answer = httpx.Response(
        207,
        json={
            "status": "COMPLETE",
            "results": [
                {"id": "501", "objectWriteTraceId": "clear-0", "properties": CLEARED, "archived": False},
                {"id": "503", "objectWriteTraceId": "clear-2", "properties": CLEARED, "archived": False},
            ],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid",
                    "context": {"ids": ["ana.work@example.com"]},
                    "errors": [],
                }
            ],
            **STAMP,
        },
    )

    result = hubspot(FakeHubSpotByEmail(faults={0: answer})).clear([ANA, BEN])

    assert result.pushed == {"m-ben"}
    assert result.failed == {"m-ana": "contact 2 of 2: VALIDATION_ERROR"}


def test_hubspot_429_with_retry_after_then_200_is_retried():
    fake = with_contacts("ben@example.com", faults={0: rate_limited(retry_after="2")})

    result = hubspot(fake).clear([BEN])

    assert result.pushed == {"m-ben"} and result.calls == 2
    assert fake.paths() == [UPDATE, UPDATE]


def test_hubspot_a_persisting_500_fails_the_person_with_a_reason_that_names_no_email():
    fake = with_contacts("ana@example.com", faults={i: server_error() for i in range(6)})

    result = hubspot(fake).clear([ANA])

    assert not result.pushed and result.calls == 6
    reason = result.failed["m-ana"]
    assert "500" in reason and "contact 1 of 2" in reason and "contact 2 of 2" in reason
    assert "@" not in reason and "ana" not in reason.lower()


def test_hubspot_a_refused_batch_fails_with_the_category_not_hubspots_message_quoting_the_emails():
    refused = error_response(400, "Duplicate IDs found in batch input: [ben@example.com]", "VALIDATION_ERROR")

    result = hubspot(FakeHubSpotByEmail(faults={0: refused})).clear([BEN])

    assert result.failed == {"m-ben": "contact 1 of 1: HubSpot refused the update (400 VALIDATION_ERROR)"}


@pytest.mark.parametrize("count", [100, 101, 230])
def test_hubspot_more_than_100_emails_go_in_ceil_n_over_100_calls(count):
    emails = [f"person{n}@example.com" for n in range(count)]
    fake = with_contacts(*emails)
    people = [Forgotten(key=f"m{n}", member_ids=(f"m{n}",), emails=(e,)) for n, e in enumerate(emails)]

    result = hubspot(fake, FakeTime()).clear(people)

    assert len(result.pushed) == count and not result.failed
    sizes = [len(body["inputs"]) for body in fake.calls(UPDATE)]
    assert len(sizes) == math.ceil(count / 100) == result.calls
    assert max(sizes) <= 100 and sum(sizes) == count


def test_hubspot_a_person_with_no_email_has_nothing_to_clear():
    fake = FakeHubSpotByEmail()

    result = hubspot(fake).clear([Forgotten(key="m-x", member_ids=("m-x",), emails=())])

    assert result.pushed == {"m-x"} and result.calls == 0 and not fake.requests


# Salesforce --------------------------------------------------------------------------------------


def soql_page(*records: dict[str, Any]) -> httpx.Response:
    rows = [{"attributes": {"type": "Contact", "url": f"{DATA}/sobjects/Contact/{r['Id']}"}, **r} for r in records]
    return httpx.Response(200, json={"totalSize": len(rows), "done": True, "records": rows})


def sent_soql(fake: FakeSalesforce) -> list[str]:
    return [r.url.params["q"] for r in fake.data_requests("GET", f"{DATA}/query")]


def test_salesforce_query_quotes_and_escapes_the_external_ids():
    fake = FakeSalesforce()
    fake.script = [soql_page()]
    person = Forgotten(key="m1", member_ids=("m1", "o'brien\\2"), emails=("ana@example.com",))

    result = salesforce(fake).clear([person])

    assert sent_soql(fake) == [
        "SELECT Id, Community_Member_Id__c FROM Contact WHERE Community_Member_Id__c IN ('m1', 'o\\'brien\\\\2')"
    ]
    assert result.pushed == {"m1"}


def test_salesforce_patch_nulls_the_four_community_fields_and_the_external_id_by_record_id():
    fake = FakeSalesforce()
    fake.script = [
        soql_page(
            {"Id": "003xx000004TmiQAAS", "Community_Member_Id__c": "m-ana"},
            {"Id": "003xx000004TmiRAAS", "Community_Member_Id__c": "m-ana-2"},
            {"Id": "003xx000004TmiSAAS", "Community_Member_Id__c": "m-ben"},
        ),
        httpx.Response(
            200,
            json=[
                {"id": "003xx000004TmiQAAS", "success": True, "errors": []},
                {"id": "003xx000004TmiRAAS", "success": True, "errors": []},
                {"id": "003xx000004TmiSAAS", "success": True, "errors": []},
            ],
        ),
    ]

    result = salesforce(fake).clear([ANA, BEN])

    assert result.pushed == {"m-ana", "m-ben"} and not result.failed and result.calls == 2
    (patch,) = fake.data_requests("PATCH")
    assert str(patch.url) == INSTANCE + COLLECTIONS  # update by Id, not the upsert by external id
    nulled = {
        "Community_Score__c": None,
        "Community_Tier__c": None,
        "Community_Tier_Changed_At__c": None,
        "Community_Last_Activity_At__c": None,
        "Community_Member_Id__c": None,
    }
    assert json.loads(patch.content) == {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "Id": "003xx000004TmiQAAS", **nulled},
            {"attributes": {"type": "Contact"}, "Id": "003xx000004TmiRAAS", **nulled},
            {"attributes": {"type": "Contact"}, "Id": "003xx000004TmiSAAS", **nulled},
        ],
    }
    assert not fake.data_requests("PATCH", UPSERT_PATH) and not fake.data_requests("POST")


def test_salesforce_a_refused_record_fails_its_person_with_the_status_code():
    fake = FakeSalesforce()
    fake.script = [
        soql_page(
            {"Id": "003xx000004TmiQAAS", "Community_Member_Id__c": "m-ana"},
            {"Id": "003xx000004TmiSAAS", "Community_Member_Id__c": "m-ben"},
        ),
        httpx.Response(
            200,
            json=[
                {"id": "003xx000004TmiQAAS", "success": True, "errors": []},
                {
                    "success": False,
                    "errors": [
                        {
                            "statusCode": "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
                            "message": "insufficient access rights on cross-reference id",
                            "fields": [],
                        }
                    ],
                },
            ],
        ),
    ]

    result = salesforce(fake).clear([ANA, BEN])

    assert result.pushed == {"m-ana"}
    assert set(result.failed) == {"m-ben"}
    assert "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY" in result.failed["m-ben"]
    assert "003xx000004TmiSAAS" in result.failed["m-ben"]


def test_salesforce_no_record_found_is_cleared_with_just_the_query():
    fake = FakeSalesforce()
    fake.script = [httpx.Response(200, json={"totalSize": 0, "done": True, "records": []})]

    result = salesforce(fake).clear([BEN])

    assert result.pushed == {"m-ben"} and not result.failed and result.calls == 1
    assert [r.method for r in fake.data_requests()] == ["GET"]


def test_salesforce_with_email_as_external_id_looks_up_the_normalized_emails():
    fake = FakeSalesforce()
    fake.script = [soql_page({"Id": "003xx000004TmiQAAS", "Community_Member_Id__c": "ana@example.com"})]
    fake.script.append(httpx.Response(200, json=[{"id": "003xx000004TmiQAAS", "success": True, "errors": []}]))

    result = salesforce(fake, SALESFORCE_EXTERNAL_ID_SOURCE="email").clear([ANA])

    assert sent_soql(fake) == [
        "SELECT Id, Community_Member_Id__c FROM Contact "
        "WHERE Community_Member_Id__c IN ('ana@example.com', 'ana.work@example.com')"
    ]
    assert result.pushed == {"m-ana"}


def test_salesforce_a_failing_lookup_fails_the_people_without_quoting_the_query():
    fake = FakeSalesforce()
    refused = httpx.Response(
        400,
        json=[{"message": "unexpected token: 'm-ben'", "errorCode": "MALFORMED_QUERY"}],
    )
    fake.script = [refused]

    result = salesforce(fake).clear([BEN])

    assert result.failed == {"m-ben": "finding the records failed: Salesforce answered 400 MALFORMED_QUERY"}


# Outbox ------------------------------------------------------------------------------------------


def test_outbox_writes_one_cleared_line_per_person(tmp_path):
    path = tmp_path / "outbox" / "crm.jsonl"

    result = Outbox(str(path)).clear([ANA, BEN])

    assert result.pushed == {"m-ana", "m-ben"} and result.calls == 0 and not result.failed
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(isinstance(line.pop("written_at"), str) for line in lines)
    nothing = {
        "community_score": None,
        "community_tier": None,
        "community_tier_changed_at": None,
        "community_last_activity_at": None,
    }
    assert lines == [
        {
            "cleared": True,
            "member_ids": ["m-ana", "m-ana-2"],
            "emails": [" Ana@Example.com", "ana.work@example.com"],
            "properties": nothing,
        },
        {"cleared": True, "member_ids": ["m-ben"], "emails": ["ben@example.com"], "properties": nothing},
    ]
