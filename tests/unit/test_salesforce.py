"""Salesforce outbound: token, sObject Collections upsert with per-item results, Tasks, retries, encoding.

The mock transport answers as Salesforce's REST API Developer Guide shows (and ../shared/samples/salesforce):
the client-credentials token answer, 200 with one `{id, success, errors, created}` per record for collections,
`[{"message", "errorCode"}]` bodies for whole-request errors, and SOQL pages of `{totalSize, done, records}`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
import stamina
from boto3.dynamodb.types import TypeSerializer

from engagement.adapters.salesforce import Auth, Credentials, Salesforce, SalesforceConfigError
from engagement.domain import salesforce as sf
from engagement.domain.crm import MemberChange
from engagement.handlers import crm_sync
from engagement.settings import SalesforceSettings, SettingsError
from tests.conftest import load_sample

INSTANCE = "https://acme.my.salesforce.com"
DATA = "/services/data/v66.0"
UPSERT_PATH = f"{DATA}/composite/sobjects/Contact/Community_Member_Id__c"
CREATE_PATH = f"{DATA}/composite/sobjects"
OWNER = "005xx000001Sv6nAAC"
QUEUE = "00Gxx000000QueueAA"
serializer = TypeSerializer()

INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
DUPLICATE = {
    "success": False,
    "errors": [{"statusCode": "DUPLICATES_DETECTED", "message": "Use one of these records?", "fields": []}],
}


@pytest.fixture(autouse=True)
def no_backoff_waits():
    stamina.set_testing(True, attempts=6)
    yield
    stamina.set_testing(False)


def record_id(prefix: str, n: int) -> str:
    return f"{prefix}xx{n:013d}"  # 18 characters, like Salesforce's case-safe ids


class FakeSalesforce:
    """Token endpoint, collections upsert/create, single-record upsert and SOQL, with scripted faults."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: list[Any] = []  # answers (or exceptions) for the next data-API requests, in order
        self.token_script: list[Any] = []
        self.tokens_issued = 0
        self.valid_tokens: set[str] = set()
        self.records: dict[str, dict[str, Any]] = {}  # external id -> fields, with "Id" and "OwnerId"
        self.tasks: list[dict[str, Any]] = []
        self.duplicates: set[str] = set()  # external ids whose save a duplicate rule blocks
        self.owners: dict[str, str] = {}  # external id -> owner to assign on create
        self.queries: list[str] = []
        self.query_pages: dict[str, list[dict[str, Any]]] = {}  # SOQL marker -> pages (for the pull)
        self.next = 1

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/services/oauth2/token":
            return self._token(request)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            if isinstance(step, httpx.Response):
                return step
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid_tokens:
            return httpx.Response(401, json=INVALID_SESSION)
        path = request.url.path
        if request.method == "PATCH" and path == UPSERT_PATH:
            return self._upsert(json.loads(request.content))
        if request.method == "POST" and path == CREATE_PATH:
            return self._create(json.loads(request.content))
        if request.method == "PATCH" and path == CREATE_PATH:
            return self._update(json.loads(request.content))
        if request.method == "PATCH" and path.startswith(f"{DATA}/sobjects/Contact/Community_Member_Id__c/"):
            raw = request.url.raw_path.decode().split("?")[0].rsplit("/", 1)[1]
            return self._upsert_one(unquote(raw), json.loads(request.content))
        if request.method == "GET" and path == f"{DATA}/query":
            return self._query(parse_qs(urlsplit(str(request.url)).query)["q"][0])
        if request.method == "GET" and path.startswith(f"{DATA}/query/"):
            return self._next_page(path)
        return httpx.Response(
            404, json=[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        )

    def _token(self, request: httpx.Request) -> httpx.Response:
        if self.token_script:
            return self.token_script.pop(0)
        form = parse_qs(request.content.decode())
        if form != {"grant_type": ["client_credentials"], "client_id": ["3MVG9-test"], "client_secret": ["s3cret"]}:
            return httpx.Response(
                400, json={"error": "invalid_client", "error_description": "invalid client credentials"}
            )
        self.tokens_issued += 1
        token = f"00Dxx0000001gPL!AQ4AQ.token{self.tokens_issued}"
        self.valid_tokens.add(token)
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "signature": "kf+e2Xhx8nSdgG7bJv0+v9Tw2JOJ/3s9hRzgtfT9bBg=",
                "scope": "api",
                "instance_url": INSTANCE,
                "id": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6nAAC",
                "token_type": "Bearer",
                "issued_at": "1764590400000",
            },
        )

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    def _save(self, ext: str, fields: dict[str, Any]) -> dict[str, Any]:
        if ext in self.duplicates:
            return DUPLICATE
        created = ext not in self.records
        if created:
            self.next += 1
            self.records[ext] = {"Id": record_id("003", self.next), "OwnerId": self.owners.get(ext, OWNER)}
        self.records[ext].update(fields)
        return {"id": self.records[ext]["Id"], "success": True, "errors": [], "created": created}

    def _upsert(self, body: dict[str, Any]) -> httpx.Response:
        assert body["allOrNone"] is False
        if len(body["records"]) > sf.COLLECTION_LIMIT:
            return httpx.Response(
                400, json=[{"message": "Maximum number of records is 200", "errorCode": "EXCEEDED_ID_LIMIT"}]
            )
        results = []
        for record in body["records"]:
            assert record["attributes"] == {"type": "Contact"}
            fields = {k: v for k, v in record.items() if k != "attributes"}
            results.append(self._save(record["Community_Member_Id__c"], fields))
        return httpx.Response(200, json=results)

    def _upsert_one(self, ext: str, body: dict[str, Any]) -> httpx.Response:
        if "@" not in body.get("Email", "@"):
            return httpx.Response(
                400, json=[{"message": "Email: invalid email address", "errorCode": "INVALID_EMAIL_ADDRESS"}]
            )
        result = self._save(ext, {"Community_Member_Id__c": ext, **body})
        return httpx.Response(201 if result.get("created") else 200, json=result)

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        results = []
        for record in body["records"]:
            assert record["attributes"] == {"type": "Task"}
            self.next += 1
            self.tasks.append(record)
            results.append({"id": record_id("00T", self.next), "success": True, "errors": []})
        return httpx.Response(200, json=results)

    def _update(self, body: dict[str, Any]) -> httpx.Response:
        results = []
        for record in body["records"]:
            for fields in self.records.values():
                if fields["Id"] == record["Id"]:
                    fields.update({k: v for k, v in record.items() if k not in ("attributes", "Id")})
            results.append({"id": record["Id"], "success": True, "errors": []})
        return httpx.Response(200, json=results)

    def _query(self, soql: str) -> httpx.Response:
        self.queries.append(soql)
        if soql.startswith("SELECT Id, OwnerId FROM"):
            by_id = {r["Id"]: r for r in self.records.values()}
            ids = [part.strip(" '()") for part in soql.split(" IN ", 1)[1].split(",")]
            sobject = soql.split(" FROM ", 1)[1].split(" ", 1)[0]
            records = [
                {
                    "attributes": {"type": sobject, "url": f"{DATA}/sobjects/{sobject}/{i}"},
                    "Id": i,
                    "OwnerId": by_id[i]["OwnerId"],
                }
                for i in ids
                if i in by_id
            ]
            return httpx.Response(200, json={"totalSize": len(records), "done": True, "records": records})
        for marker, pages in self.query_pages.items():
            if marker in soql:
                return httpx.Response(200, json=pages[0])
        return httpx.Response(200, json={"totalSize": 0, "done": True, "records": []})

    def _next_page(self, path: str) -> httpx.Response:
        for pages in self.query_pages.values():
            for index, page in enumerate(pages[:-1]):
                if page.get("nextRecordsUrl") == path:
                    return httpx.Response(200, json=pages[index + 1])
        return httpx.Response(404, json=[{"errorCode": "INVALID_QUERY_LOCATOR", "message": "invalid query locator"}])

    def data_requests(self, method: str | None = None, path: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if r.url.path != "/services/oauth2/token"
            and (method is None or r.method == method)
            and (path is None or r.url.path == path)
        ]


CREDENTIALS = Credentials("https://acme.my.salesforce.com", "3MVG9-test", "s3cret")


def salesforce(fake: FakeSalesforce, **env: str) -> Salesforce:
    client = httpx.Client(transport=httpx.MockTransport(fake))
    settings = SalesforceSettings.from_env(env)
    from datetime import date

    return Salesforce(Auth(CREDENTIALS, client), settings, client, today=lambda: date(2026, 12, 3))


def change(n: int, tier: str = "Active", previous: str | None = "Casual", entered: bool = False, **extra: Any):
    values: dict[str, Any] = {
        "member_id": f"m{n:04d}",
        "email": f"member{n}@example.com",
        "name": f"Member Number{n}",
        "score": 42.5 + n,
        "tier": tier,
        "previous_tier": previous,
        "tier_changed_at": "2026-12-01T12:00:00+00:00",
        "last_activity_at": "2026-11-30T08:15:00+00:00",
        "version": 3,
        "entered_task_tier": entered,
    }
    values.update(extra)
    return MemberChange(**values)


# Stream records, as DynamoDB Streams hands them to Lambda -------------------------------------


def member_image(n: int, score: float, tier: str, version: int) -> dict[str, Any]:
    return {
        "member_id": f"m{n:04d}",
        "email": f"member{n}@example.com",
        "name": f"member{n}",
        "score": score,
        "tier": tier,
        "version": version,
        "tier_changed_at": "2026-12-01T12:00:00+00:00",
        "last_activity_at": "2026-11-30T12:00:00+00:00",
        "event_count": 4,
    }


def stream_record(seq: str, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    def image(values: dict[str, Any]) -> dict[str, Any]:
        return {k: serializer.serialize(Decimal(str(v)) if isinstance(v, float) else v) for k, v in values.items()}

    return {
        "eventID": f"ev-{seq}",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764590400.0,
            "Keys": {"member_id": {"S": new["member_id"]}},
            "NewImage": image(new),
            "OldImage": image(old),
            "SequenceNumber": seq,
            "SizeBytes": 300,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/engagement-members/stream/2026-12-01",
    }


def stream_event(count: int, champions: set[int]) -> dict[str, Any]:
    records = []
    for n in range(count):
        if n in champions:
            old, new = member_image(n, 120.0, "Power User", 1), member_image(n, 160.0, "Champion", 2)
        else:
            old, new = member_image(n, 20.0, "Casual", 1), member_image(n, 35.0, "Active", 2)
        records.append(stream_record(f"{1000 + n:021d}", old, new))
    return {"Records": records}


# Per-item results (the stream handler's done-when test is tests/integration/test_salesforce_sync.py) -----


def test_the_duplicate_reason_says_what_to_do():
    fake = FakeSalesforce()
    fake.duplicates.add("m0001")
    result = salesforce(fake).push([change(1), change(2)])
    assert result.pushed == {"m0002"}
    assert result.failed["m0001"].startswith("DUPLICATES_DETECTED: Use one of these records?")
    assert "SALESFORCE_DUPLICATE_RULE_HEADER=allowSave=true" in result.failed["m0001"]
    assert result.calls == 1


def test_duplicate_rule_header_is_sent_when_configured():
    fake = FakeSalesforce()
    result = salesforce(fake, SALESFORCE_DUPLICATE_RULE_HEADER="allowSave=true").push([change(1)])
    assert result.pushed == {"m0001"}
    assert fake.data_requests()[0].headers["Sforce-Duplicate-Rule-Header"] == "allowSave=true"


def test_a_configured_api_version_is_the_one_in_every_data_path():
    fake = FakeSalesforce()
    # This org's data API answers only under v61.0, as an org whose integration pins an older version would.
    ok = httpx.Response(200, json=[{"id": "003xx0000001", "success": True, "errors": [], "created": True}])
    fake.script = [ok]
    result = salesforce(fake, SALESFORCE_API_VERSION="61.0").push([change(1)])
    assert result.pushed == {"m0001"}
    paths = [r.url.path for r in fake.requests if r.url.path != "/services/oauth2/token"]
    assert paths == ["/services/data/v61.0/composite/sobjects/Contact/Community_Member_Id__c"]


def test_sample_partial_failure_answer_is_read_item_by_item():
    """Salesforce's documented allOrNone=false answer: first saved, second MALFORMED_ID."""
    answer = load_sample("salesforce/composite_sobjects.upsert.response.partial-failure.allOrNone-false.json")
    fake = FakeSalesforce()
    fake.script = [httpx.Response(200, json=answer)]
    result = salesforce(fake).push([change(1), change(2)])
    assert result.pushed == {"m0001"}
    assert result.failed == {
        "m0002": "MALFORMED_ID: Contact ID: id value of incorrect type: 001xx0000004GxEAAU (fields: Id)"
    }


def test_sample_duplicates_answer_fails_only_the_first_record():
    answer = load_sample("salesforce/composite_sobjects.create.response.duplicates-detected.allOrNone-false.json")
    fake = FakeSalesforce()
    fake.script = [httpx.Response(200, json=answer)]
    result = salesforce(fake).push([change(1), change(2)])
    assert result.pushed == {"m0002"}
    assert result.failed["m0001"].startswith("DUPLICATES_DETECTED")


def test_an_answer_with_the_wrong_number_of_results_fails_the_batch():
    fake = FakeSalesforce()
    fake.script = [httpx.Response(200, json=[{"id": "003xx0000000001AAA", "success": True, "errors": []}])]
    result = salesforce(fake).push([change(1), change(2)])
    assert result.pushed == set()
    assert set(result.failed) == {"m0001", "m0002"}


# Token -------------------------------------------------------------------------------------


def test_expired_token_is_refreshed_once_and_the_call_repeated():
    fake = FakeSalesforce()
    adapter = salesforce(fake)
    assert adapter.push([change(1)]).pushed == {"m0001"}
    fake.expire_tokens()  # the org's session timeout passed
    result = adapter.push([change(2)])
    assert result.pushed == {"m0002"}
    assert fake.tokens_issued == 2
    statuses = [r.url.path for r in fake.requests]
    assert statuses == ["/services/oauth2/token", UPSERT_PATH, UPSERT_PATH, "/services/oauth2/token", UPSERT_PATH]
    assert fake.requests[-1].headers["Authorization"] == "Bearer 00Dxx0000001gPL!AQ4AQ.token2"


def test_a_token_refused_after_refresh_fails_without_looping():
    fake = FakeSalesforce()
    fake.script = [httpx.Response(401, json=INVALID_SESSION), httpx.Response(401, json=INVALID_SESSION)]
    result = salesforce(fake).push([change(1)])
    assert result.pushed == set()
    assert "401 INVALID_SESSION_ID" in result.failed["m0001"]
    assert fake.tokens_issued == 2
    assert len(fake.data_requests()) == 2


def test_wrong_client_credentials_fail_with_salesforces_reason():
    fake = FakeSalesforce()
    client = httpx.Client(transport=httpx.MockTransport(fake))
    bad = Salesforce(
        Auth(Credentials(INSTANCE, "3MVG9-test", "wrong"), client), SalesforceSettings.from_env({}), client
    )
    result = bad.push([change(1)])
    assert "invalid_client: invalid client credentials" in result.failed["m0001"]
    assert fake.data_requests() == []


def test_token_endpoint_503_is_retried():
    fake = FakeSalesforce()
    fake.token_script = [httpx.Response(503, text="Service Unavailable")]
    assert salesforce(fake).push([change(1)]).pushed == {"m0001"}
    assert fake.tokens_issued == 1


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("not json", "must be JSON"),
        ('["a"]', "JSON object"),
        ('{"login_url": "https://acme.my.salesforce.com", "client_id": "x"}', "lacks client_secret"),
        ('{"login_url": "http://acme.my.salesforce.com", "client_id": "x", "client_secret": "y"}', "https URL"),
    ],
)
def test_credentials_secret_is_checked(secret, message):
    with pytest.raises(SalesforceConfigError, match=message):
        Credentials.from_secret(secret)


# Transient failures ------------------------------------------------------------------------


def test_503_and_429_are_retried_with_backoff():
    fake = FakeSalesforce()
    fake.script = [
        httpx.Response(503, json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "Too many requests"}]),
        httpx.Response(
            429, headers={"Retry-After": "2"}, json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "x"}]
        ),
    ]
    result = salesforce(fake).push([change(1)])
    assert result.pushed == {"m0001"}
    assert result.calls == 3


def test_persistent_500_fails_the_batch_after_bounded_attempts():
    fake = FakeSalesforce()
    fake.script = [httpx.Response(500, json=[{"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error"}])] * 6
    result = salesforce(fake).push([change(1), change(2)])
    assert result.pushed == set()
    assert result.failed["m0001"].startswith("Salesforce answered 500")
    assert result.calls == 6


def test_concurrent_request_limit_is_retried():
    fake = FakeSalesforce()
    fake.script = [
        httpx.Response(
            403, json=[{"message": "ConcurrentPerOrgLongTxn Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        )
    ]
    result = salesforce(fake).push([change(1)])
    assert result.pushed == {"m0001"}
    assert result.calls == 2


def test_daily_api_limit_is_not_retried():
    fake = FakeSalesforce()
    fake.script = [
        httpx.Response(403, json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    ]
    result = salesforce(fake).push([change(1)])
    assert "REQUEST_LIMIT_EXCEEDED" in result.failed["m0001"]
    assert result.calls == 1


def test_upsert_timeout_is_retried_because_an_upsert_is_idempotent():
    fake = FakeSalesforce()
    fake.script = [httpx.ReadTimeout("timed out")]
    result = salesforce(fake).push([change(1)])
    assert result.pushed == {"m0001"}
    assert result.calls == 2


def test_task_create_timeout_is_not_repeated_so_no_second_task_appears(caplog):
    fake = FakeSalesforce()
    adapter = salesforce(fake)
    # upsert answered, owner query answered, then the create times out: Salesforce may have made the task.
    fake.script = [None, None, httpx.ReadTimeout("timed out")]
    with caplog.at_level("WARNING", logger="engagement"):
        result = adapter.push([change(1, tier="Champion", previous="Power User", entered=True)])
    # At most once: the member counts as pushed (a retry would repeat the task), and the doubt is logged.
    assert result.pushed == {"m0001"}
    assert len(fake.data_requests("POST", CREATE_PATH)) == 1
    (logged,) = [r for r in caplog.records if r.getMessage() == "salesforce tasks may not exist"]
    assert logged.members == ["m0001"]
    assert "did not answer a create in time" in logged.reason


def test_task_create_500_is_not_repeated_either():
    fake = FakeSalesforce()
    fake.script = [None, None, httpx.Response(500, json=[{"errorCode": "UNKNOWN_EXCEPTION", "message": "x"}])]
    result = salesforce(fake).push([change(1, tier="Champion", previous="Power User", entered=True)])
    assert result.pushed == {"m0001"}
    assert len(fake.data_requests("POST", CREATE_PATH)) == 1


def test_connect_timeout_on_task_create_is_retried():
    fake = FakeSalesforce()
    fake.script = [None, None, httpx.ConnectTimeout("connect timed out")]
    result = salesforce(fake).push([change(1, tier="Power User", previous="Active", entered=True)])
    assert result.pushed == {"m0001"}
    assert len(fake.tasks) == 1
    assert fake.tasks[0]["Priority"] == "Normal"


# Whole-request 400: one by one, with the external id percent-encoded in the path ---------------


def test_a_refused_collection_is_tried_record_by_record_with_encoded_external_ids():
    fake = FakeSalesforce()
    fake.script = [
        httpx.Response(400, json=[{"message": "Cannot deserialize instance", "errorCode": "JSON_PARSER_ERROR"}])
    ]
    changes = [
        change(1, member_id="m/1?x#y%z"),
        change(2, email="not-an-address", member_id="m2"),
        change(3, member_id="m 3+4@5"),
    ]
    result = salesforce(fake).push(changes)
    assert result.pushed == {"m/1?x#y%z", "m 3+4@5"}
    assert result.failed["m2"].startswith("Salesforce answered 400 INVALID_EMAIL_ADDRESS")
    singles = fake.data_requests("PATCH")[1:]
    assert [r.url.raw_path.decode() for r in singles] == [
        f"{DATA}/sobjects/Contact/Community_Member_Id__c/m%2F1%3Fx%23y%25z",
        f"{DATA}/sobjects/Contact/Community_Member_Id__c/m2",
        f"{DATA}/sobjects/Contact/Community_Member_Id__c/m%203%2B4%405",
    ]
    assert fake.records["m/1?x#y%z"]["Email"] == "member1@example.com"


def test_one_by_one_stops_when_every_record_fails_like_the_collection():
    fake = FakeSalesforce()
    refusal = [
        {"message": "No such column 'Community_Score__c' on sobject of type Contact", "errorCode": "INVALID_FIELD"}
    ]
    fake.script = [httpx.Response(400, json=refusal), httpx.Response(400, json=refusal)]
    result = salesforce(fake).push([change(n) for n in range(5)])
    assert result.pushed == set()
    assert len(result.failed) == 5
    assert len(fake.data_requests()) == 2  # the collection and the first single record; not five more


def test_email_as_external_id_is_lower_cased_and_encoded():
    path = sf.external_id_path("66.0", "Lead", "Email_Ext__c", "ana+community@example.com")
    assert path == "/services/data/v66.0/sobjects/Lead/Email_Ext__c/ana%2Bcommunity%40example.com"
    record = sf.upsert_record(
        change(1, email=" Ana+Community@Example.com "),
        sobject="Lead",
        external_id_field="Email_Ext__c",
        external_id_source="email",
        lead_company="Community",
    )
    assert record["Email_Ext__c"] == "ana+community@example.com"


# Leads, owners, names ----------------------------------------------------------------------


def test_leads_get_a_company_and_queue_owned_leads_get_an_unassigned_task():
    fake = FakeSalesforce()
    lead_path = f"{DATA}/composite/sobjects/Lead/Community_Member_Id__c"
    fake.script = [
        httpx.Response(200, json=[{"id": "00Qxx0000001AAAAAA", "success": True, "errors": [], "created": True}]),
        httpx.Response(
            200,
            json={
                "totalSize": 1,
                "done": True,
                "records": [
                    {
                        "attributes": {"type": "Lead", "url": f"{DATA}/sobjects/Lead/00Qxx0000001AAAAAA"},
                        "Id": "00Qxx0000001AAAAAA",
                        "OwnerId": QUEUE,
                    }
                ],
            },
        ),
    ]
    result = salesforce(fake, SALESFORCE_OBJECT="Lead").push(
        [change(1, tier="Champion", previous="Active", entered=True)]
    )
    assert result.pushed == {"m0001"}
    upsert = fake.data_requests("PATCH")[0]
    assert upsert.url.path == lead_path
    body = json.loads(upsert.content)["records"][0]
    assert body["attributes"] == {"type": "Lead"} and body["Company"] == "Community"
    soql = fake.data_requests("GET")[0].url.params["q"]
    assert soql == "SELECT Id, OwnerId FROM Lead WHERE Id IN ('00Qxx0000001AAAAAA')"
    assert fake.tasks[0]["WhoId"] == "00Qxx0000001AAAAAA"
    assert "OwnerId" not in fake.tasks[0]


@pytest.mark.parametrize(
    ("name", "email", "expected"),
    [
        ("Ana María López", "ana@example.com", ("Ana María", "López")),
        ("octocat", "o@example.com", (None, "octocat")),
        ("ana@example.com", "ana@example.com", (None, "ana")),
        ("", "bo@example.com", (None, "bo")),
    ],
)
def test_names_split_into_first_and_last(name, email, expected):
    assert sf.split_name(name, email) == expected


def test_a_failed_task_fails_its_member_but_not_the_others():
    fake = FakeSalesforce()
    adapter = salesforce(fake)
    task_refused = {
        "success": False,
        "errors": [
            {
                "statusCode": "FIELD_INTEGRITY_EXCEPTION",
                "message": "Assigned To ID: owner is inactive",
                "fields": ["OwnerId"],
            }
        ],
    }
    fake.script = [
        None,
        None,
        httpx.Response(200, json=[task_refused, {"id": "00Txx0000000009AAA", "success": True, "errors": []}]),
    ]
    result = adapter.push(
        [
            change(1, tier="Champion", previous="Power User", entered=True),
            change(2, tier="Power User", previous="Active", entered=True),
            change(3),
        ]
    )
    assert result.pushed == {"m0002", "m0003"}
    assert result.failed["m0001"].startswith("record updated but the task failed: FIELD_INTEGRITY_EXCEPTION")


# Settings ----------------------------------------------------------------------------------


def test_settings_defaults():
    settings = SalesforceSettings.from_env({})
    assert (settings.api_version, settings.sobject, settings.external_id_field) == (
        "66.0",
        "Contact",
        "Community_Member_Id__c",
    )
    assert settings.status_field == "Account.Type"
    assert SalesforceSettings.from_env({"SALESFORCE_OBJECT": "Lead"}).status_field == "Status"
    assert SalesforceSettings.from_env({"SALESFORCE_API_VERSION": "v62.0"}).api_version == "62.0"


@pytest.mark.parametrize(
    "env",
    [
        {"SALESFORCE_API_VERSION": "latest"},
        {"SALESFORCE_OBJECT": "Account"},
        {"SALESFORCE_EXTERNAL_ID_SOURCE": "phone"},
        {"SALESFORCE_DUPLICATE_RULE_HEADER": "allowSave=yes"},
        {"SALESFORCE_EXTERNAL_ID_FIELD": "Id; DELETE"},
        {"SALESFORCE_PULL_INITIAL_DAYS": "0"},
    ],
)
def test_settings_refuse_unusable_values(env):
    with pytest.raises(SettingsError):
        SalesforceSettings.from_env(env)


def test_crm_provider_salesforce_selects_the_adapter(monkeypatch):
    from engagement.adapters.salesforce import Salesforce as Adapter
    from engagement.handlers.errors import NotConfigured
    from engagement.settings import Settings

    settings = Settings.from_env({"CRM_PROVIDER": "salesforce"})
    monkeypatch.delenv("SALESFORCE_CREDENTIALS", raising=False)
    monkeypatch.delenv("SALESFORCE_CREDENTIALS_ARN", raising=False)
    with pytest.raises(NotConfigured, match="SALESFORCE_CREDENTIALS"):
        crm_sync.crm_adapter(settings)
    monkeypatch.setenv("SALESFORCE_CREDENTIALS", "{}")
    with pytest.raises(NotConfigured, match="lacks login_url, client_id, client_secret"):
        crm_sync.crm_adapter(settings)
    monkeypatch.setenv(
        "SALESFORCE_CREDENTIALS",
        json.dumps({"login_url": INSTANCE, "client_id": "3MVG9-test", "client_secret": "s3cret"}),
    )
    assert isinstance(crm_sync.crm_adapter(settings), Adapter)


def test_a_push_stops_retrying_when_its_time_budget_is_spent():
    fake = FakeSalesforce()
    adapter = salesforce(fake)
    moments = iter([0.0, 100.0])  # the push starts, then the first call finds the budget spent
    adapter.clock = lambda: next(moments)
    result = adapter.push([change(1)])
    assert result.failed == {"m0001": "not sent: this push ran out of time for retries (Lambda retries the record)"}
    assert fake.requests == []


# Set-up check (engagement salesforce check) --------------------------------------------------


def describe_field(name: str, field_type: str, external_id: bool = False, updateable: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": name.removesuffix("__c").replace("_", " "),
        "type": field_type,
        "custom": name.endswith("__c"),
        "externalId": external_id,
        "unique": external_id,
        "updateable": updateable,
        "createable": updateable,
        "nillable": True,
    }


def contact_describe(*fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "Contact",
        "label": "Contact",
        "createable": True,
        "updateable": True,
        "upsertable": True,
        "queryable": True,
        "fields": [describe_field("Id", "id", updateable=False), describe_field("Email", "email"), *fields],
    }


READY = (
    describe_field("Community_Member_Id__c", "string", external_id=True),
    describe_field("Community_Score__c", "double"),
    describe_field("Community_Tier__c", "string"),
    describe_field("Community_Tier_Changed_At__c", "datetime"),
    describe_field("Community_Last_Activity_At__c", "datetime"),
)


def test_check_passes_for_a_ready_org():
    from engagement.local.cli_salesforce import check

    fake = FakeSalesforce()
    fake.script = [httpx.Response(200, json=contact_describe(*READY))]
    adapter = salesforce(fake)
    assert check(adapter) == []
    assert fake.data_requests()[0].url.path == f"{DATA}/sobjects/Contact/describe"


def test_check_names_each_problem():
    from engagement.local.cli_salesforce import check

    fake = FakeSalesforce()
    fields = (
        describe_field("Community_Member_Id__c", "string", external_id=False),
        describe_field("Community_Score__c", "string"),
        describe_field("Community_Tier__c", "string", updateable=False),
        describe_field("Community_Tier_Changed_At__c", "datetime"),
    )
    fake.script = [httpx.Response(200, json=contact_describe(*fields))]
    assert check(salesforce(fake)) == [
        "Contact.Community_Member_Id__c is not marked External ID",
        "Contact.Community_Score__c is of type string, expected double",
        "Contact.Community_Tier__c is read-only for the integration user",
        "Contact.Community_Last_Activity_At__c is missing or not visible to the integration user",
    ]


@pytest.mark.parametrize("command", ["check", "setup", "pull"])
def test_commands_without_credentials_exit_2(monkeypatch, command):
    from typer.testing import CliRunner

    from engagement.local.cli import app

    monkeypatch.delenv("SALESFORCE_CREDENTIALS", raising=False)
    monkeypatch.delenv("SALESFORCE_CREDENTIALS_ARN", raising=False)
    result = CliRunner().invoke(app, ["salesforce", command])
    assert result.exit_code == 2
    assert "SALESFORCE_CREDENTIALS" in result.output


def test_two_members_with_one_email_as_external_id_send_one_record():
    fake = FakeSalesforce()
    email_path = f"{DATA}/composite/sobjects/Contact/Email_Ext__c"
    fake.script = [
        httpx.Response(200, json=[{"id": "003xx0000000077AAA", "success": True, "errors": [], "created": True}])
    ]
    adapter = salesforce(fake, SALESFORCE_EXTERNAL_ID_FIELD="Email_Ext__c", SALESFORCE_EXTERNAL_ID_SOURCE="email")
    result = adapter.push([change(1, email="Same@Example.com"), change(2, email="same@example.com ")])
    assert result.pushed == {"m0001"}
    # Reported as skipped where the sync's PushResult has that field, else as failed.
    assert {**result.failed, **getattr(result, "skipped", {})} == {
        "m0002": "member m0001 has the same external id; Salesforce keeps one record per id"
    }
    (upsert,) = fake.data_requests("PATCH")
    assert upsert.url.path == email_path
    assert [r["Email_Ext__c"] for r in json.loads(upsert.content)["records"]] == ["same@example.com"]


def test_upsert_body_has_the_documented_shape():
    """Same envelope as Salesforce's upsert example: allOrNone, records with attributes.type and the external id."""
    documented = load_sample("salesforce/composite_sobjects.upsert.Account.MyExtId__c.request.json")
    fake = FakeSalesforce()
    salesforce(fake).push([change(1), change(2)])
    sent = json.loads(fake.data_requests("PATCH", UPSERT_PATH)[0].content)
    assert sent.keys() == documented.keys() == {"allOrNone", "records"}
    assert sent["allOrNone"] is documented["allOrNone"] is False
    for ours, theirs in zip(sent["records"], documented["records"], strict=True):
        assert ours["attributes"].keys() == theirs["attributes"].keys() == {"type"}
        assert "Community_Member_Id__c" in ours and "MyExtId__c" in theirs
    assert fake.data_requests("PATCH", UPSERT_PATH)[0].headers["Content-Type"] == "application/json"


def test_sample_created_and_updated_answer_marks_both_pushed():
    answer = load_sample("salesforce/composite_sobjects.upsert.response.200.json")
    fake = FakeSalesforce()
    fake.script = [httpx.Response(200, json=answer)]
    adapter_result = salesforce(fake).push([change(1), change(2)])
    assert adapter_result.pushed == {"m0001", "m0002"}
    assert adapter_result.failed == {}


def test_query_follows_next_records_url_and_survives_a_token_expiry():
    fake = FakeSalesforce()
    first = {
        "totalSize": 3,
        "done": False,
        "nextRecordsUrl": f"{DATA}/query/01gxx000000AbCdAAS-2000",
        "records": [{"attributes": {"type": "Contact"}, "Id": "003xx0000000001AAA"}] * 2,
    }
    last = {"totalSize": 3, "done": True, "records": [{"attributes": {"type": "Contact"}, "Id": "003xx0000000003AAA"}]}
    fake.query_pages = {"FROM Contact": [first, last]}
    adapter = salesforce(fake)
    pages = adapter.query_pages("SELECT Id FROM Contact")
    assert len(next(pages)) == 2
    fake.expire_tokens()  # the session ends between pages
    assert [r["Id"] for r in next(pages)] == ["003xx0000000003AAA"]
    assert fake.tokens_issued == 2
    assert [r.url.path for r in fake.data_requests()] == [
        f"{DATA}/query",
        f"{DATA}/query/01gxx000000AbCdAAS-2000",
        f"{DATA}/query/01gxx000000AbCdAAS-2000",
    ]


def test_query_refuses_a_next_records_url_off_the_data_api():
    from engagement.adapters.hubspot import CrmRejected

    fake = FakeSalesforce()
    fake.query_pages = {
        "FROM Contact": [{"totalSize": 2, "done": False, "nextRecordsUrl": "https://evil.example/x", "records": []}]
    }
    with pytest.raises(CrmRejected, match="unexpected nextRecordsUrl"):
        salesforce(fake).query("SELECT Id FROM Contact")


def test_a_single_upsert_matching_several_records_is_not_counted_as_saved():
    fake = FakeSalesforce()
    fake.script = [
        httpx.Response(400, json=[{"message": "Cannot deserialize instance", "errorCode": "JSON_PARSER_ERROR"}]),
        # Salesforce's 300 Multiple Choices: the external id is on two records; the body lists them.
        httpx.Response(
            300, json=[f"{DATA}/sobjects/Contact/003xx0000000001AAA", f"{DATA}/sobjects/Contact/003xx0000000002AAA"]
        ),
    ]
    result = salesforce(fake).push([change(1), change(2)])
    assert result.pushed == {"m0002"}
    assert result.failed == {"m0001": "Salesforce answered 300: the external id matches more than one record"}
