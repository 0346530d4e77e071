"""A HubSpot stand-in for httpx.MockTransport, answering in the shapes HubSpot documents.

It keeps contacts (by email), tasks, deals and properties, so tests can check what landed, and
plays a script of faults by call number (`faults={0: RATE_LIMITED, 4: SERVER_ERROR}`), as HubSpot
would answer the nth request. Shapes: batch upsert/read/update/create answer `status`, `results`,
`startedAt`, `completedAt` (and `errors`, `numErrors` with 207); errors answer `status`, `message`,
`correlationId`, `category` (see ../shared/samples/hubspot/).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

CORRELATION = "5c1e5d4a-6f1b-4c52-9d4e-1f0f2f1b7a11"


def error_response(status: int, message: str, category: str, headers: dict[str, str] | None = None, **extra: Any):
    return httpx.Response(
        status,
        headers={"Content-Type": "application/json", **(headers or {})},
        json={"status": "error", "message": message, "correlationId": CORRELATION, "category": category, **extra},
    )


def rate_limited(retry_after: str | None = "1") -> httpx.Response:
    # The body HubSpot sends for its per-second policy (shared sample error.429.secondly.from-issue.json).
    return httpx.Response(
        429,
        headers={"Content-Type": "application/json", **({"Retry-After": retry_after} if retry_after else {})},
        json={
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": "aedc0d29-ba1e-48e3-9fa0-9975c9131a7a",
            "groupName": "publicapi:hapikey-secondly:2431623",
            "policyName": "SECONDLY",
            "requestId": "632b866a6fc6454f32d5423a1166e92a",
        },
    )


def server_error() -> httpx.Response:
    return error_response(500, "internal error", "INTERNAL_ERROR")


class FakeTime:
    """A monotonic clock whose sleep advances it, for the rate limiter."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


STAMP = {"startedAt": "2026-12-01T12:00:00.000Z", "completedAt": "2026-12-01T12:00:00.200Z"}


class FakeHubSpot:
    def __init__(
        self,
        faults: dict[int, httpx.Response | Exception] | None = None,
        refuse_email: Callable[[str], bool] | None = None,
        down: bool = False,
    ) -> None:
        self.faults = dict(faults or {})
        self.refuse_email = refuse_email or (lambda email: False)
        self.down = down
        self.requests: list[httpx.Request] = []
        self.contacts: dict[str, dict[str, Any]] = {}  # email -> {"id", "properties"}
        self.upserts: dict[str, int] = {}  # email -> successful upserts
        self.tasks: list[dict[str, Any]] = []
        self.deals: dict[str, dict[str, Any]] = {}
        self.deal_contacts: dict[str, list[str]] = {}
        self.deal_companies: dict[str, list[str]] = {}
        self.company_contacts: dict[str, list[str]] = {}
        self.properties: set[str] = set()
        self.searches: list[dict[str, Any]] = []
        self.groups: set[str] = set()
        self.next_id = 1000

    def _id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        index = len(self.requests)
        self.requests.append(request)
        if index in self.faults:
            fault = self.faults[index]
            if isinstance(fault, Exception):
                raise fault
            return fault
        if self.down:
            return error_response(503, "Service Unavailable", "SERVICE_UNAVAILABLE")
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        handler = {
            "/crm/v3/objects/contacts/batch/upsert": self._upsert,
            "/crm/v3/objects/contacts/batch/update": self._update,
            "/crm/v3/objects/contacts/batch/read": self._read_contacts,
            "/crm/v3/objects/tasks/batch/create": self._create_tasks,
            "/crm/v3/properties/contacts/groups": self._create_group,
            "/crm/v3/properties/contacts": self._create_property,
            "/crm/v3/objects/contacts/search": self._search_contacts,
            "/crm/v3/objects/deals/search": self._search_deals,
            # HubSpot-defined association type ids: deal->contact 3, deal->company 341, company->contact 280.
            "/crm/v4/associations/deals/contacts/batch/read": lambda b: self._associations(b, self.deal_contacts, 3),
            "/crm/v4/associations/deals/companies/batch/read": lambda b: self._associations(
                b, self.deal_companies, 341
            ),
            "/crm/v4/associations/companies/contacts/batch/read": lambda b: self._associations(
                b, self.company_contacts, 280
            ),
            "/crm/v3/objects/deals/batch/read": self._read_deals,
        }.get(path)
        if handler is None:
            return error_response(404, f"no route {path}", "OBJECT_NOT_FOUND")
        return handler(body)

    # Contacts ------------------------------------------------------------------------------

    def _upsert(self, body: dict[str, Any]) -> httpx.Response:
        emails = [item["id"] for item in body["inputs"]]
        if len(set(emails)) != len(emails):
            return error_response(400, "Duplicate IDs found in batch input: " + ", ".join(emails), "VALIDATION_ERROR")
        bad = [e for e in emails if self.refuse_email(e)]
        if bad:
            return error_response(400, f"Property values were not valid: email {bad[0]} is invalid", "VALIDATION_ERROR")
        results = []
        for item in body["inputs"]:
            email = item["id"]
            contact = self.contacts.get(email)
            new = contact is None
            if new:
                contact = self.contacts[email] = {"id": self._id(), "properties": {}}
            contact["properties"].update(item["properties"])
            self.upserts[email] = self.upserts.get(email, 0) + 1
            results.append(
                {
                    "id": contact["id"],
                    "objectWriteTraceId": item.get("objectWriteTraceId"),
                    "properties": dict(contact["properties"]),
                    "new": new,
                    "archived": False,
                    "createdAt": "2026-12-01T12:00:00.000Z",
                    "updatedAt": "2026-12-01T12:00:00.100Z",
                }
            )
        return httpx.Response(200, json={"status": "COMPLETE", "results": results, **STAMP})

    def _update(self, body: dict[str, Any]) -> httpx.Response:
        results = []
        for item in body["inputs"]:
            for email, contact in self.contacts.items():
                if contact["id"] == item["id"]:
                    contact["properties"].update(item["properties"])
                    self.upserts[email] = self.upserts.get(email, 0) + 1
                    results.append({"id": contact["id"], "properties": dict(contact["properties"])})
        return httpx.Response(200, json={"status": "COMPLETE", "results": results, **STAMP})

    def _read_contacts(self, body: dict[str, Any]) -> httpx.Response:
        by_id = {c["id"]: c for c in self.contacts.values()}
        results = []
        for item in body["inputs"]:
            contact = by_id.get(item["id"])
            if contact:
                props = {p: contact["properties"].get(p) for p in body.get("properties", [])}
                results.append({"id": contact["id"], "properties": {"hs_object_id": contact["id"], **props}})
        return httpx.Response(200, json={"status": "COMPLETE", "results": results, **STAMP})

    def _create_tasks(self, body: dict[str, Any]) -> httpx.Response:
        results = []
        for item in body["inputs"]:
            task = {"id": self._id(), **item}
            self.tasks.append(task)
            results.append(
                {
                    "id": task["id"],
                    "objectWriteTraceId": item.get("objectWriteTraceId"),
                    "properties": item["properties"],
                    "archived": False,
                    "createdAt": "2026-12-01T12:00:00.000Z",
                    "updatedAt": "2026-12-01T12:00:00.000Z",
                }
            )
        return httpx.Response(201, json={"status": "COMPLETE", "results": results, **STAMP})

    # Properties ----------------------------------------------------------------------------

    def _create_group(self, body: dict[str, Any]) -> httpx.Response:
        if body["name"] in self.groups:
            return error_response(
                409, f"A property group named {body['name']} already exists.", "OBJECT_ALREADY_EXISTS"
            )
        self.groups.add(body["name"])
        return httpx.Response(201, json={"name": body["name"], "label": body["label"], "displayOrder": -1})

    def _create_property(self, body: dict[str, Any]) -> httpx.Response:
        if body["name"] in self.properties:
            return error_response(409, f"Property named '{body['name']}' already exists.", "OBJECT_ALREADY_EXISTS")
        self.properties.add(body["name"])
        return httpx.Response(201, json={**body, "createdAt": "2026-12-01T12:00:00.000Z"})

    # Inbound -------------------------------------------------------------------------------

    def _search_contacts(self, body: dict[str, Any]) -> httpx.Response:
        rows = [
            {"id": c["id"], "properties": {"email": e, **c["properties"]}, "archived": False}
            for e, c in sorted(self.contacts.items(), key=lambda kv: int(kv[1]["id"]))
        ]
        return self._page(rows, body)

    def _search_deals(self, body: dict[str, Any]) -> httpx.Response:
        rows = [{"id": i, "properties": d, "archived": False} for i, d in sorted(self.deals.items())]
        return self._page(rows, body)

    def _page(self, rows: list[dict[str, Any]], body: dict[str, Any]) -> httpx.Response:
        for group in body.get("filterGroups") or []:
            for f in group["filters"]:
                name, value = f["propertyName"], f["value"]
                if f["operator"] == "GTE":
                    rows = [r for r in rows if _epoch_ms(r["properties"].get(name)) >= int(value)]
                elif f["operator"] == "EQ":
                    rows = [r for r in rows if str(r["properties"].get(name)) == value]
        self.searches.append(body)
        start = int(body.get("after") or 0)
        limit = int(body.get("limit") or 10)
        page = rows[start : start + limit]
        answer: dict[str, Any] = {"total": len(rows), "results": page}
        if start + limit < len(rows):
            answer["paging"] = {"next": {"after": str(start + limit), "link": "?after=" + str(start + limit)}}
        return httpx.Response(200, json=answer)

    def _read_deals(self, body: dict[str, Any]) -> httpx.Response:
        results = [
            {"id": item["id"], "properties": {p: self.deals[item["id"]].get(p) for p in body.get("properties", [])}}
            for item in body["inputs"]
            if item["id"] in self.deals
        ]
        return httpx.Response(200, json={"status": "COMPLETE", "results": results, **STAMP})

    def _associations(self, body: dict[str, Any], links: dict[str, list[str]], type_id: int) -> httpx.Response:
        results = []
        for item in body["inputs"]:
            to = [
                {
                    "toObjectId": int(c),
                    "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}],
                }
                for c in links.get(item["id"], [])
            ]
            if to:
                results.append({"from": {"id": item["id"]}, "to": to})
        return httpx.Response(200, json={"status": "COMPLETE", "results": results, **STAMP})

    # Views ---------------------------------------------------------------------------------

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def _epoch_ms(value: Any) -> int:
    from datetime import datetime

    if value is None:
        return 0
    text = str(value)
    return int(text) if text.isdigit() else int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
