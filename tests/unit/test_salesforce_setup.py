"""`engagement salesforce setup`: fields through the Tooling API, a permission set, its field permissions and
assignment, each created only when missing. The fake org answers as Salesforce documents: Tooling and REST
queries as `{totalSize, done, records}`, creates as `{id, success, errors}` (201 for a single record, 200 with
one result per record for a collection).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stamina

from engagement.adapters.hubspot import CrmRejected
from engagement.adapters.salesforce import Auth, Credentials, Salesforce
from engagement.local.cli_salesforce import setup
from engagement.settings import SalesforceSettings

INSTANCE = "https://acme.my.salesforce.com"
DATA = "/services/data/v66.0"
INTEGRATION_USER = "005xx000001Sv6nAAC"
FIELDS = [
    "Contact.Community_Member_Id__c",
    "Contact.Community_Score__c",
    "Contact.Community_Tier__c",
    "Contact.Community_Tier_Changed_At__c",
    "Contact.Community_Last_Activity_At__c",
]


@pytest.fixture(autouse=True)
def no_backoff_waits():
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)


class FakeOrg:
    def __init__(self, fields: set[str] | None = None) -> None:
        self.fields: dict[str, dict[str, Any]] = {name: {} for name in fields or set()}
        self.permission_sets: dict[str, str] = {}  # name -> id
        self.field_permissions: list[dict[str, Any]] = []
        self.assignments: list[tuple[str, str]] = []
        self.writes: list[str] = []
        self.next = 0

    def _id(self, prefix: str) -> str:
        self.next += 1
        return f"{prefix}xx{self.next:013d}"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/services/oauth2/token":
            return httpx.Response(
                200,
                json={
                    "access_token": "00Dxx!admin",
                    "instance_url": INSTANCE,
                    "id": f"https://login.salesforce.com/id/00Dxx0000001gPLEAY/{INTEGRATION_USER}",
                    "token_type": "Bearer",
                    "issued_at": "1764590400000",
                },
            )
        if request.method == "GET" and path == f"{DATA}/tooling/query":
            soql = parse_qs(urlsplit(str(request.url)).query)["q"][0]
            assert soql == "SELECT Id, DeveloperName FROM CustomField WHERE TableEnumOrId = 'Contact'"
            records = [
                {"attributes": {"type": "CustomField"}, "Id": self._id("00N"), "DeveloperName": n.split(".")[1][:-3]}
                for n in self.fields
            ]
            return self._page(records)
        if request.method == "POST" and path == f"{DATA}/tooling/sobjects/CustomField":
            body = json.loads(request.content)
            self.writes.append(f"field {body['FullName']}")
            self.fields[body["FullName"]] = body["Metadata"]
            return httpx.Response(
                201, json={"id": self._id("00N"), "success": True, "errors": [], "warnings": [], "infos": []}
            )
        if request.method == "GET" and path == f"{DATA}/query":
            return self._query(parse_qs(urlsplit(str(request.url)).query)["q"][0])
        if request.method == "POST" and path == f"{DATA}/composite/sobjects":
            return self._create(json.loads(request.content)["records"])
        return httpx.Response(
            404, json=[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        )

    def _page(self, records: list[dict[str, Any]]) -> httpx.Response:
        return httpx.Response(200, json={"totalSize": len(records), "done": True, "records": records})

    def _query(self, soql: str) -> httpx.Response:
        if soql.startswith("SELECT Id FROM PermissionSet WHERE"):
            return self._page([{"Id": i} for n, i in self.permission_sets.items() if f"'{n}'" in soql])
        if soql.startswith("SELECT Field FROM FieldPermissions"):
            return self._page([{"Field": p["Field"]} for p in self.field_permissions if f"'{p['ParentId']}'" in soql])
        if soql.startswith("SELECT Id FROM PermissionSetAssignment"):
            return self._page(
                [{"Id": "0Pa"} for ps, user in self.assignments if f"'{ps}'" in soql and f"'{user}'" in soql]
            )
        raise AssertionError(soql)

    def _create(self, records: list[dict[str, Any]]) -> httpx.Response:
        results = []
        for record in records:
            kind = record["attributes"]["type"]
            self.writes.append(kind)
            if kind == "PermissionSet":
                self.permission_sets[record["Name"]] = self._id("0PS")
                results.append({"id": self.permission_sets[record["Name"]], "success": True, "errors": []})
            elif kind == "FieldPermissions":
                self.field_permissions.append(record)
                results.append({"id": self._id("01k"), "success": True, "errors": []})
            elif kind == "PermissionSetAssignment":
                self.assignments.append((record["PermissionSetId"], record["AssigneeId"]))
                results.append({"id": self._id("0Pa"), "success": True, "errors": []})
        return httpx.Response(200, json=results)


def adapter(org: FakeOrg) -> Salesforce:
    client = httpx.Client(transport=httpx.MockTransport(org))
    return Salesforce(
        Auth(Credentials(INSTANCE, "admin-app", "s3cret"), client),
        SalesforceSettings.from_env({}),
        client,
        today=lambda: date(2026, 12, 3),
    )


def test_setup_creates_everything_once():
    org = FakeOrg()
    done = setup(adapter(org))

    assert done == [*(f"created field {f}" for f in FIELDS), "created permission set Community_Engagement_Sync"] + [
        f"granted read and edit on {f}" for f in FIELDS
    ] + [f"assigned Community_Engagement_Sync to {INTEGRATION_USER}"]
    assert org.fields["Contact.Community_Member_Id__c"] == {
        "label": "Community Member Id",
        "type": "Text",
        "length": 64,
        "externalId": True,
        "unique": True,
        "caseSensitive": True,
        "description": "Community engagement scoring: the member this record belongs to (the upsert key).",
    }
    assert org.fields["Contact.Community_Score__c"]["type"] == "Number"
    assert (
        org.fields["Contact.Community_Score__c"]["precision"],
        org.fields["Contact.Community_Score__c"]["scale"],
    ) == (16, 2)
    assert org.fields["Contact.Community_Tier_Changed_At__c"]["type"] == "DateTime"
    assert all(p["PermissionsRead"] and p["PermissionsEdit"] for p in org.field_permissions)
    assert org.assignments == [(org.permission_sets["Community_Engagement_Sync"], INTEGRATION_USER)]

    writes = len(org.writes)
    assert setup(adapter(org)) == []  # idempotent: a second run changes nothing
    assert len(org.writes) == writes


def test_setup_fills_only_the_gaps_and_assigns_the_named_user():
    org = FakeOrg(fields={"Contact.Community_Member_Id__c", "Contact.Community_Score__c"})
    done = setup(adapter(org), assignee="005xx000009ZzZzAAK")
    assert [d for d in done if d.startswith("created field")] == [
        "created field Contact.Community_Tier__c",
        "created field Contact.Community_Tier_Changed_At__c",
        "created field Contact.Community_Last_Activity_At__c",
    ]
    assert org.assignments[0][1] == "005xx000009ZzZzAAK"


def test_setup_stops_on_a_refused_field():
    org = FakeOrg()
    original = org.__call__

    def refuse_fields(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tooling/sobjects/CustomField"):
            return httpx.Response(
                400,
                json=[
                    {"message": "insufficient access rights on cross-reference id", "errorCode": "INSUFFICIENT_ACCESS"}
                ],
            )
        return original(request)

    client = httpx.Client(transport=httpx.MockTransport(refuse_fields))
    sf = Salesforce(Auth(Credentials(INSTANCE, "x", "y"), client), SalesforceSettings.from_env({}), client)
    with pytest.raises(CrmRejected, match="INSUFFICIENT_ACCESS"):
        setup(sf)
    assert org.permission_sets == {}
