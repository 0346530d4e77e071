"""Forgetting a person in the CRM: HubSpot batch read by email then update by id, Salesforce lookup then update by
Id, the outbox.

Answers are written as the vendors document them. HubSpot: batch read (`idProperty: email`) and batch update
answer 200 `{status, results, startedAt, completedAt}` when every input was found and 207 with `errors`
(`status`, `category`, `message`, `context`, `errors`) and `numErrors` when some were not; each result has `id`,
`properties` (the read echoes the requested `email`), `archived`, `createdAt`, `updatedAt`; an email with no
contact is an `OBJECT_NOT_FOUND` error naming it in `context.ids`
(../shared/samples/hubspot/contacts.batch_update.response.207.docs-example.json).
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
from engagement.domain.identity import MERGED_TIER
from tests.hubspot_fake import STAMP, FakeHubSpot, FakeTime, error_response, rate_limited, server_error
from tests.unit.test_hubspot_outbound import UPSERT as UPSERT_CONTACTS
from tests.unit.test_hubspot_outbound import change, hubspot
from tests.unit.test_salesforce import DATA, INSTANCE, UPSERT_PATH, FakeSalesforce, salesforce

UPDATE = "/crm/v3/objects/contacts/batch/update"
READ = "/crm/v3/objects/contacts/batch/read"
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


def not_found(ids: list[str]) -> dict[str, Any]:
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": NOT_FOUND_MESSAGE,
        "context": {"ids": ids},
        "errors": [],
    }


def batch_answer(results: list[dict[str, Any]], errors: list[dict[str, Any]]) -> httpx.Response:
    if not errors:
        return httpx.Response(200, json={"status": "COMPLETE", "results": results, **STAMP})
    body = {"status": "COMPLETE", "results": results, "numErrors": len(errors), "errors": errors, **STAMP}
    return httpx.Response(207, json=body)


def record(contact_id: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": contact_id,
        "properties": {**properties, "hs_object_id": contact_id},
        "archived": False,
        "createdAt": "2026-11-02T09:00:00.000Z",
        "updatedAt": "2026-12-01T12:00:00.150Z",
    }


class FakeHubSpotByEmail(FakeHubSpot):
    """FakeHubSpot whose batch read finds contacts by `idProperty: email` and whose batch update refuses
    `idProperty: email` the way some portals do, and answers a missing id with OBJECT_NOT_FOUND."""

    def _read_contacts(self, body: dict[str, Any]) -> httpx.Response:
        if body.get("idProperty") != "email":
            return super()._read_contacts(body)
        results, missing = [], []
        for item in body["inputs"]:
            contact = self.contacts.get(item["id"])
            if contact is None:
                missing.append(item["id"])
                continue
            props = {p: contact["properties"].get(p) for p in body.get("properties", [])}
            results.append(record(contact["id"], {**props, "email": item["id"]}))
        return batch_answer(results, [not_found(missing)] if missing else [])

    def _update(self, body: dict[str, Any]) -> httpx.Response:
        if any(item.get("idProperty") == "email" for item in body["inputs"]):
            return error_response(
                400, "Unable to perform update/upsert by non-unique 0-1 property email", "VALIDATION_ERROR"
            )
        by_id = {c["id"]: c for c in self.contacts.values()}
        results, missing = [], []
        for item in body["inputs"]:
            contact = by_id.get(item["id"])
            if contact is None:
                missing.append(item["id"])
                continue
            contact["properties"].update(item["properties"])
            results.append(record(contact["id"], item["properties"]))
        return batch_answer(results, [not_found(missing)] if missing else [])


def with_contacts(*emails: str, **kwargs: Any) -> FakeHubSpotByEmail:
    fake = FakeHubSpotByEmail(**kwargs)
    for n, email in enumerate(emails):
        fake.contacts[email] = {"id": str(501 + n), "properties": {"community_tier": "Champion"}}
    return fake


ANA = Forgotten(key="m-ana", member_ids=("m-ana", "m-ana-2"), emails=(" Ana@Example.com", "ana.work@example.com"))
BEN = Forgotten(key="m-ben", member_ids=("m-ben",), emails=("ben@example.com",))


# HubSpot -----------------------------------------------------------------------------------------


def test_hubspot_reads_three_emails_in_one_call_then_updates_the_contacts_by_id():
    fake = with_contacts("ana@example.com", "ana.work@example.com", "ben@example.com")

    result = hubspot(fake).clear([ANA, BEN])

    assert result.pushed == {"m-ana", "m-ben"} and not result.failed and result.calls == 2
    assert fake.paths() == [READ, UPDATE]  # no upsert, no create
    read, update = fake.requests
    assert read.method == update.method == "POST"
    assert json.loads(read.content) == {
        "idProperty": "email",
        "properties": ["email"],
        "inputs": [{"id": "ana@example.com"}, {"id": "ana.work@example.com"}, {"id": "ben@example.com"}],
    }
    assert json.loads(update.content) == {
        "inputs": [
            {"id": "501", "properties": CLEARED},
            {"id": "502", "properties": CLEARED},
            {"id": "503", "properties": CLEARED},
        ]
    }
    assert all(c["properties"]["community_tier"] == "" for c in fake.contacts.values())


def test_hubspot_an_email_without_a_contact_is_not_found_by_the_read_and_counts_as_cleared():
    fake = with_contacts("ana@example.com", "ben@example.com")

    result = hubspot(fake).clear([ANA, BEN])

    assert result.pushed == {"m-ana", "m-ben"} and not result.failed and result.calls == 2
    # The read answered 207 with OBJECT_NOT_FOUND for ana.work@example.com; only the two found are updated.
    (update,) = fake.calls(UPDATE)
    assert [i["id"] for i in update["inputs"]] == ["501", "502"]


def test_hubspot_no_contact_for_any_email_needs_no_update():
    fake = FakeHubSpotByEmail()

    result = hubspot(fake).clear([BEN])

    assert result.pushed == {"m-ben"} and not result.failed and fake.paths() == [READ]


def test_hubspot_two_emails_of_one_contact_update_it_once():
    # HubSpot can find one contact by its primary and a secondary address; a batch naming an id twice is refused.
    read = batch_answer(
        [record("501", {"email": "ana@example.com"}), record("501", {"email": "ana.work@example.com"})], []
    )
    fake = with_contacts("ana@example.com", faults={0: read})

    result = hubspot(fake).clear([ANA])

    assert result.pushed == {"m-ana"}
    (update,) = fake.calls(UPDATE)
    assert update["inputs"] == [{"id": "501", "properties": CLEARED}]


def test_hubspot_a_contact_deleted_between_read_and_update_counts_as_cleared():
    read = batch_answer([record("777", {"email": "ben@example.com"})], [])
    fake = FakeHubSpotByEmail(faults={0: read})  # the update of 777 answers 207 OBJECT_NOT_FOUND

    result = hubspot(fake).clear([BEN])

    assert result.pushed == {"m-ben"} and not result.failed and fake.paths() == [READ, UPDATE]


def test_hubspot_another_update_error_category_fails_only_that_person_naming_the_contact_by_position():
    fake = with_contacts("ana@example.com", "ana.work@example.com", "ben@example.com")
    refused = {
        "status": "error",
        "category": "VALIDATION_ERROR",
        "message": "Property values were not valid",
        "context": {"ids": ["502"]},
        "errors": [],
    }
    fake.faults[1] = batch_answer([record("501", CLEARED), record("503", CLEARED)], [refused])

    result = hubspot(fake).clear([ANA, BEN])

    assert result.pushed == {"m-ben"}
    assert result.failed == {"m-ana": "contact 2 of 2: VALIDATION_ERROR"}


def test_hubspot_another_read_error_category_fails_that_person_without_the_address():
    error = {"status": "error", "category": "VALIDATION_ERROR", "message": "Invalid email: ana.work@example.com"}
    read = batch_answer(
        [record("501", {"email": "ana@example.com"})], [{**error, "context": {"ids": ["ana.work@example.com"]}}]
    )
    fake = with_contacts("ana@example.com", faults={0: read})

    result = hubspot(fake).clear([ANA])

    assert result.failed == {"m-ana": "contact 2 of 2: finding the contact failed: VALIDATION_ERROR"}
    assert fake.calls(UPDATE)[0]["inputs"] == [{"id": "501", "properties": CLEARED}]  # the found one is cleared


def test_hubspot_429_with_retry_after_then_200_is_retried():
    fake = with_contacts("ben@example.com", faults={0: rate_limited(retry_after="2")})

    result = hubspot(fake).clear([BEN])

    assert result.pushed == {"m-ben"} and result.calls == 3
    assert fake.paths() == [READ, READ, UPDATE]
    assert fake.contacts["ben@example.com"]["properties"]["community_tier"] == ""


def test_hubspot_a_persisting_500_fails_the_person_with_a_reason_that_names_no_email():
    fake = with_contacts("ana@example.com", faults={i: server_error() for i in range(6)})

    result = hubspot(fake).clear([ANA])

    assert not result.pushed and result.calls == 6 and fake.paths() == [READ] * 6
    reason = result.failed["m-ana"]
    assert "500" in reason and "contact 1 of 2" in reason and "contact 2 of 2" in reason
    assert "@" not in reason and "ana" not in reason.lower()


def test_hubspot_a_persisting_500_on_the_update_fails_the_person():
    fake = with_contacts("ben@example.com", faults={i: server_error() for i in range(1, 7)})

    result = hubspot(fake).clear([BEN])

    assert result.failed == {"m-ben": "contact 1 of 1: HubSpot answered 500 (after retries)"}
    assert fake.paths() == [READ] + [UPDATE] * 6


def test_hubspot_a_refused_read_fails_with_the_category_not_hubspots_message_quoting_the_emails():
    refused = error_response(400, "Duplicate IDs found in batch input: [ben@example.com]", "VALIDATION_ERROR")

    result = hubspot(FakeHubSpotByEmail(faults={0: refused})).clear([BEN])

    assert result.failed == {
        "m-ben": "contact 1 of 1: finding the contact failed: HubSpot refused the lookup (400 VALIDATION_ERROR)"
    }


@pytest.mark.parametrize("count", [100, 101, 230])
def test_hubspot_more_than_100_emails_go_in_ceil_n_over_100_read_and_update_calls(count):
    emails = [f"person{n}@example.com" for n in range(count)]
    fake = with_contacts(*emails)
    people = [Forgotten(key=f"m{n}", member_ids=(f"m{n}",), emails=(e,)) for n, e in enumerate(emails)]

    result = hubspot(fake, FakeTime()).clear(people)

    assert len(result.pushed) == count and not result.failed
    for path in (READ, UPDATE):
        sizes = [len(body["inputs"]) for body in fake.calls(path)]
        assert len(sizes) == math.ceil(count / 100)
        assert max(sizes) <= 100 and sum(sizes) == count
    assert result.calls == 2 * math.ceil(count / 100)


def test_hubspot_a_person_with_no_email_has_nothing_to_clear():
    fake = FakeHubSpotByEmail()

    result = hubspot(fake).clear([Forgotten(key="m-x", member_ids=("m-x",), emails=())])

    assert result.pushed == {"m-x"} and result.calls == 0 and not fake.requests


def test_hubspot_push_sends_the_live_change_when_a_merged_one_with_a_higher_version_shares_its_email():
    fake = FakeHubSpot()
    merged = change(1, email="ana@example.com", tier=MERGED_TIER, score=0.0, version=9)
    live = change(2, email="Ana@Example.com", tier="Champion", score=80.0, version=3)

    result = hubspot(fake).push([merged, live])

    assert result.pushed == {"m2"} and set(result.skipped) == {"m1"}
    ((sent,),) = [body["inputs"] for body in fake.calls(UPSERT_CONTACTS)]
    assert sent["objectWriteTraceId"] == "m2" and sent["properties"]["community_tier"] == "Champion"


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
