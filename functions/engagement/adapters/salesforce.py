"""Salesforce REST over httpx: OAuth client-credentials token, sObject Collections upsert, Tasks, SOQL pages.

Behaviour taken from Salesforce's REST API documentation:
- The token comes from `POST {My Domain}/services/oauth2/token` (grant_type=client_credentials); its answer has
  `access_token` and `instance_url` but no lifetime (the org's session timeout decides), so it is cached until a
  call answers 401 `INVALID_SESSION_ID`, then fetched once more and the call repeated once.
- `PATCH /services/data/vXX.X/composite/sobjects/{SObject}/{ExternalIdField}` upserts up to 200 records; with
  `allOrNone: false` it answers 200 with one result per record, in request order, each `success` true or false
  with `errors[].statusCode` (e.g. `DUPLICATES_DETECTED`). Every item is checked.
- 429 and 503 (too many requests) and other 5xx are transient and retried with backoff (stamina), as is 403
  `REQUEST_LIMIT_EXCEEDED` for concurrent requests; the same code for the org's daily allowance
  (`TotalRequests Limit exceeded`) is not retried within the invocation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import stamina

from engagement.adapters.hubspot import CrmRejected, PushResult, TransientError
from engagement.domain import salesforce as sf
from engagement.domain.crm import Forgotten, MemberChange
from engagement.settings import SALESFORCE_CREDENTIALS, SalesforceSettings

TOKEN_PATH = "/services/oauth2/token"
DEFAULT_RETRY_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 20.0
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Retries of one call stop after this long; a whole push stops retrying after PUSH_BUDGET_SECONDS, so that its
# members are reported failed (and retried by Lambda) well before the CRM sync's 2-minute timeout.
CALL_RETRY_SECONDS = 60.0
PUSH_BUDGET_SECONDS = 90.0


class SalesforceConfigError(ValueError):
    """The credentials secret is missing something or is not JSON."""


class LimitExceeded(CrmRejected):
    """403 REQUEST_LIMIT_EXCEEDED: the org's API allowance is used up; retrying now only burns more of it."""


class Refused(CrmRejected):
    """A 4xx for the whole request, with Salesforce's first error code."""

    def __init__(self, message: str, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Ambiguous(Exception):
    """A create whose outcome is unknown (read timeout, 500/502/504): repeating it could make a second record."""


@dataclass(frozen=True)
class Credentials:
    login_url: str  # the org's My Domain URL, e.g. https://acme.my.salesforce.com
    client_id: str
    client_secret: str

    @classmethod
    def from_secret(cls, text: str) -> Credentials:
        try:
            values = json.loads(text)
        except ValueError:
            raise SalesforceConfigError(
                "the Salesforce credentials secret must be JSON with login_url, client_id and client_secret"
            ) from None
        if not isinstance(values, dict):
            raise SalesforceConfigError("the Salesforce credentials secret must be a JSON object")
        missing = [k for k in ("login_url", "client_id", "client_secret") if not str(values.get(k) or "").strip()]
        if missing:
            raise SalesforceConfigError(f"the Salesforce credentials secret lacks {', '.join(missing)}")
        login_url = str(values["login_url"]).strip().rstrip("/")
        if urlsplit(login_url).scheme != "https" or not urlsplit(login_url).hostname:
            raise SalesforceConfigError(f"login_url must be an https URL (the org's My Domain), not {login_url!r}")
        return cls(login_url, str(values["client_id"]).strip(), str(values["client_secret"]).strip())


@dataclass(frozen=True)
class Token:
    access_token: str
    instance_url: str
    identity_url: str = ""  # https://login.salesforce.com/id/<org id>/<user id>: the user the token acts as

    @property
    def user_id(self) -> str | None:
        last = self.identity_url.rstrip("/").rsplit("/", 1)[-1]
        return last if sf.is_record_id(last) else None


def _backoff(error: Exception) -> bool | float:
    if isinstance(error, TransientError):
        return error.retry_after if error.retry_after is not None else True
    return isinstance(error, httpx.TransportError)


def _first_error(response: httpx.Response) -> tuple[str | None, str]:
    """(errorCode, message) of a REST error body `[{"message": ..., "errorCode": ...}]` or an OAuth error."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:300]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), str(body[0].get("message", ""))
    if isinstance(body, dict) and "error" in body:
        return str(body["error"]), str(body.get("error_description", ""))
    return None, response.text[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(value)))
    except ValueError:
        return DEFAULT_RETRY_SECONDS


class Auth:
    """The access token, fetched with the client-credentials flow and kept until Salesforce refuses it."""

    def __init__(self, credentials: Credentials, client: httpx.Client) -> None:
        self.credentials = credentials
        self.client = client
        self._token: Token | None = None
        self.fetches = 0

    def token(self) -> Token:
        return self._token or self.refresh()

    def refresh(self) -> Token:
        self._token = None
        self.fetches += 1
        response = self.client.post(
            self.credentials.login_url + TOKEN_PATH,
            data={
                "grant_type": "client_credentials",
                "client_id": self.credentials.client_id,
                "client_secret": self.credentials.client_secret,
            },
            headers={"Accept": "application/json"},
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"Salesforce's token endpoint answered {response.status_code}", _retry_after(response))
        if response.status_code != 200:
            code, message = _first_error(response)
            # invalid_client / invalid_grant: wrong credentials or the flow is not enabled for the app.
            raise CrmRejected(f"Salesforce refused the client credentials ({response.status_code} {code}: {message})")
        body = response.json()
        if not body.get("access_token") or not body.get("instance_url"):
            raise CrmRejected("Salesforce's token answer lacks access_token or instance_url")
        self._token = Token(str(body["access_token"]), str(body["instance_url"]).rstrip("/"), str(body.get("id") or ""))
        return self._token


class Salesforce:
    name = "salesforce"  # the CRM's name in sync state and outcome ids
    batch_limit = sf.COLLECTION_LIMIT  # members per push that one upsert call can take (the reconcile's chunk)

    def __init__(
        self,
        auth: Auth,
        settings: SalesforceSettings,
        client: httpx.Client | None = None,
        attempts: int = 6,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.auth = auth
        self.settings = settings
        self.client = client or auth.client
        self.attempts = attempts
        self.today = today
        self.calls = 0  # REST API calls, each counted against the org's daily allowance (token fetches are not)
        self.clock = time.monotonic
        self.deadline: float | None = None  # set for the duration of a push

    @property
    def data_path(self) -> str:
        return f"/services/data/v{self.settings.api_version}"

    # HTTP ------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: Any, params: dict[str, str] | None, *, creates: bool) -> Any:
        """One call, with one token refresh on INVALID_SESSION_ID; raises by kind of failure."""
        token = self.auth.token()
        response = self._http(method, token, path, body, params, creates=creates)
        if response.status_code == 401 and _first_error(response)[0] == "INVALID_SESSION_ID":
            response = self._http(method, self.auth.refresh(), path, body, params, creates=creates)
        status = response.status_code
        if status == 429 or status == 503 or (status >= 500 and not creates):
            raise TransientError(f"Salesforce answered {status}: {response.text[:200]}", _retry_after(response))
        if status >= 500:
            raise Ambiguous(f"Salesforce answered {status} to a create; not repeated: {response.text[:200]}")
        if status == 300:
            # An upsert by external id that matches several records: nothing was saved.
            raise Refused("Salesforce answered 300: the external id matches more than one record", 300, "300")
        if status >= 400:
            code, message = _first_error(response)
            if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
                if "TotalRequests" in message:  # the org's rolling 24-hour allowance: waiting seconds won't help
                    raise LimitExceeded(f"Salesforce API limit reached (REQUEST_LIMIT_EXCEEDED): {message}")
                # e.g. ConcurrentPerOrgLongTxn: too many long requests at once, which clears in seconds.
                raise TransientError(
                    f"Salesforce answered 403 REQUEST_LIMIT_EXCEEDED: {message}", _retry_after(response)
                )
            raise Refused(f"Salesforce answered {status} {code}: {message}", status, code)
        if status == 204 or not response.content:
            return None
        return response.json()

    def _http(
        self, method: str, token: Token, path: str, body: Any, params: dict[str, str] | None, *, creates: bool
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token.access_token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.settings.duplicate_rule_header and method in ("PATCH", "POST"):
            headers["Sforce-Duplicate-Rule-Header"] = self.settings.duplicate_rule_header
        self.calls += 1
        try:
            return self.client.request(
                method,
                token.instance_url + path,
                json=body,
                params=params,
                headers=headers,
                timeout=DEFAULT_TIMEOUT,
            )
        except httpx.TransportError as error:
            # Nothing was sent when connecting failed; a read timeout on a create may have created the record.
            if creates and not isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
                raise Ambiguous(f"Salesforce did not answer a create in time ({type(error).__name__})") from error
            raise

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None, **kw: Any) -> Any:
        creates = bool(kw.get("creates"))
        budget = CALL_RETRY_SECONDS
        if self.deadline is not None:
            budget = min(budget, self.deadline - self.clock())
            if budget <= 0:
                raise TransientError("not sent: this push ran out of time for retries (Lambda retries the record)")
        for attempt in stamina.retry_context(on=_backoff, attempts=self.attempts, timeout=budget, wait_max=10.0):
            with attempt:
                return self._send(method, path, body, params, creates=creates)
        raise AssertionError("unreachable: stamina re-raises the last error")

    # Outbound --------------------------------------------------------------------------------

    def push(self, changes: Sequence[MemberChange]) -> PushResult:
        """Upsert every change's Contact (or Lead) by the external id, then one Task per tier entry.

        Returns which members landed and why the others did not; a refused or failed call fails
        only the members it carried.
        """
        result = PushResult()
        calls_before = self.calls
        self.deadline = self.clock() + PUSH_BUDGET_SECONDS
        try:
            self._push(changes, result)
        finally:
            self.deadline = None
        result.calls = self.calls - calls_before
        return result

    def _push(self, changes: Sequence[MemberChange], result: PushResult) -> None:
        changes = self._one_per_external_id(changes, result)
        record_ids: dict[str, str | None] = {}
        for start in range(0, len(changes), sf.COLLECTION_LIMIT):
            record_ids.update(self._upsert_batch(list(changes[start : start + sf.COLLECTION_LIMIT]), result))
        # Tasks after all upserts, so a push needs one owner query and one create per 200 tasks, not per batch.
        due = [c for c in changes if c.entered_task_tier and c.member_id in record_ids]
        task_failures: dict[str, str] = {}
        for start in range(0, len(due), sf.COLLECTION_LIMIT):
            task_failures.update(self._create_tasks(due[start : start + sf.COLLECTION_LIMIT], record_ids))
        for change in changes:
            if change.member_id not in record_ids:
                continue
            if change.member_id in task_failures:
                result.failed[change.member_id] = (
                    f"record updated but the task failed: {task_failures[change.member_id]}"
                )
            else:
                result.pushed.add(change.member_id)
                records = getattr(result, "records", None)
                if isinstance(records, dict) and record_ids[change.member_id]:
                    records[change.member_id] = str(record_ids[change.member_id])

    def _one_per_external_id(self, changes: Sequence[MemberChange], result: PushResult) -> list[MemberChange]:
        """Changes with distinct external ids: two records with one id in a collection both fail.

        Only possible with `SALESFORCE_EXTERNAL_ID_SOURCE=email` (two members sharing an address): the first is
        sent, the others are reported skipped where the result has room for that, else failed, with the reason.
        """
        seen: dict[str, str] = {}
        kept = []
        for change in changes:
            value = sf.external_id(change, self.settings.external_id_source)
            if value in seen:
                # The value is an email here: named by whose it is, not printed (reasons are logged).
                reason = f"member {seen[value]} has the same external id; Salesforce keeps one record per id"
                skipped = getattr(result, "skipped", None)
                (skipped if isinstance(skipped, dict) else result.failed)[change.member_id] = reason
                continue
            seen[value] = change.member_id
            kept.append(change)
        return kept

    def _record(self, change: MemberChange) -> dict[str, Any]:
        s = self.settings
        return sf.upsert_record(
            change,
            sobject=s.sobject,
            external_id_field=s.external_id_field,
            external_id_source=s.external_id_source,
            lead_company=s.lead_company,
        )

    def _upsert_batch(self, batch: list[MemberChange], result: PushResult) -> dict[str, str | None]:
        """Member id -> record id for the members saved; failures go into `result.failed`."""
        s = self.settings
        path = f"{self.data_path}/composite/sobjects/{s.sobject}/{s.external_id_field}"
        body = {"allOrNone": False, "records": [self._record(c) for c in batch]}
        try:
            answer = self._call("PATCH", path, body)
        except Refused as refused:
            if refused.status == 400 and len(batch) > 1:
                return self._upsert_one_by_one(batch, refused, result)
            result.failed.update({c.member_id: str(refused) for c in batch})
            return {}
        except (TransientError, CrmRejected, Ambiguous, httpx.TransportError) as error:
            result.failed.update({c.member_id: str(error) or type(error).__name__ for c in batch})
            return {}
        if not isinstance(answer, list) or len(answer) != len(batch):
            reason = "Salesforce's answer did not hold one result per record"
            result.failed.update({c.member_id: reason for c in batch})
            return {}
        saved: dict[str, str | None] = {}
        for change, item in zip(batch, answer, strict=True):
            reason = sf.item_failure(item)
            if reason is None:
                saved[change.member_id] = str(item["id"])
            else:
                if "DUPLICATES_DETECTED" in sf.error_codes(item) and not s.duplicate_rule_header:
                    reason += (
                        " (a duplicate rule blocked the save: merge the records in Salesforce, or set "
                        "SALESFORCE_DUPLICATE_RULE_HEADER=allowSave=true)"
                    )
                result.failed[change.member_id] = reason
        return saved

    def _upsert_one_by_one(
        self, batch: list[MemberChange], refused: Refused, result: PushResult
    ) -> dict[str, str | None]:
        """A collection refused whole (400): each record alone, so one bad record cannot hold back the rest.

        Stops at the first record refused with the collection's own error code: then the request, not a
        record, is at fault (a missing field, say), and the rest would fail the same way.
        """
        s = self.settings
        saved: dict[str, str | None] = {}
        for index, change in enumerate(batch):
            record = self._record(change)
            value = record.pop(s.external_id_field)
            record.pop("attributes")
            try:
                answer = self._call(
                    "PATCH", sf.external_id_path(s.api_version, s.sobject, s.external_id_field, value), record
                )
            except Refused as alone:
                result.failed[change.member_id] = str(alone)
                if alone.code is not None and alone.code == refused.code:
                    reason = f"{refused} (the same error for a single record; not tried one by one)"
                    result.failed.update({c.member_id: reason for c in batch[index + 1 :]})
                    return saved
                continue
            except (TransientError, CrmRejected, Ambiguous, httpx.TransportError) as error:
                result.failed[change.member_id] = str(error) or type(error).__name__
                continue
            # 201 (created) and 200 (updated) carry {"id", "success", "created"}; 204 (older versions) has no body.
            saved[change.member_id] = str(answer["id"]) if isinstance(answer, dict) and answer.get("id") else None
        return saved

    def _create_tasks(self, due: list[MemberChange], record_ids: dict[str, str | None]) -> dict[str, str]:
        """One Task per tier entry, owned by the record's owner; returns member id -> why its task failed."""
        failures: dict[str, str] = {}
        with_ids = []
        for change in due:
            if record_ids.get(change.member_id):
                with_ids.append(change)
            else:
                failures[change.member_id] = "Salesforce did not return the record id the task needs"
        if not with_ids:
            return failures
        ids = [str(record_ids[c.member_id]) for c in with_ids]
        try:
            owners = self._owners(ids)
        except (TransientError, CrmRejected, httpx.TransportError, ValueError) as error:
            failures.update({c.member_id: f"could not read the record owners: {error}" for c in with_ids})
            return failures
        today = self.today()
        records = [
            sf.task_record(str(record_ids[c.member_id]), owners.get(str(record_ids[c.member_id])), c, today)
            for c in with_ids
        ]
        try:
            answer = self._call(
                "POST", f"{self.data_path}/composite/sobjects", {"allOrNone": False, "records": records}, creates=True
            )
        except Ambiguous as error:
            # The tasks may exist: at most once, like the sync's task claims. Not failed (a retry would repeat
            # them); logged for an operator to look at in Salesforce.
            from engagement.observability import logger

            logger.warning(
                "salesforce tasks may not exist",
                extra={"members": [c.member_id for c in with_ids], "reason": str(error)},
            )
            return failures
        except (TransientError, CrmRejected, httpx.TransportError) as error:
            failures.update({c.member_id: str(error) or type(error).__name__ for c in with_ids})
            return failures
        if not isinstance(answer, list) or len(answer) != len(with_ids):
            failures.update(
                {c.member_id: "Salesforce's task answer did not hold one result per task" for c in with_ids}
            )
            return failures
        for change, item in zip(with_ids, answer, strict=True):
            reason = sf.item_failure(item)
            if reason:
                failures[change.member_id] = reason
        return failures

    # Forgetting ------------------------------------------------------------------------------

    def clear(self, people: Sequence[Forgotten]) -> PushResult:
        """Null the community fields and the external id on every record a forgotten person had.

        Records are found by external id (one SOQL query per 200 values) and updated by Id through sObject
        Collections, never upserted, so no record is created. A person with no record is reported pushed
        (nothing to clear); a failed lookup or update, or an item Salesforce refused, fails only the people
        it concerns, with Salesforce's status code (reasons are logged: they carry no external id values).
        """
        result = PushResult()
        calls_before = self.calls
        self.deadline = self.clock() + PUSH_BUDGET_SECONDS
        try:
            result.failed.update(self._clear(people))
        finally:
            self.deadline = None
        result.pushed = {p.key for p in people if p.key not in result.failed}
        result.calls = self.calls - calls_before
        return result

    def _clear(self, people: Sequence[Forgotten]) -> dict[str, str]:
        s = self.settings
        owners: dict[str, set[str]] = {}  # external id value -> keys of the people it belongs to
        for person in people:
            # With SALESFORCE_EXTERNAL_ID_SOURCE=email the records carry the normalized email, as `push` wrote it.
            if s.external_id_source == "member_id":
                values = [v.strip() for v in person.member_ids]
            else:
                values = [e.strip().lower() for e in person.emails]
            for value in filter(None, values):
                owners.setdefault(value, set()).add(person.key)
        # SOQL compares text case-insensitively, so the values that come back are matched the same way.
        by_folded: dict[str, set[str]] = {}
        for value, keys in owners.items():
            by_folded.setdefault(value.lower(), set()).update(keys)
        failed: dict[str, str] = {}

        def fail(keys: set[str], reason: str) -> None:
            for key in keys:
                failed.setdefault(key, reason)

        values = list(owners)
        records: dict[str, set[str]] = {}  # record Id -> keys of the people whose member it holds
        for start in range(0, len(values), sf.COLLECTION_LIMIT):
            chunk = values[start : start + sf.COLLECTION_LIMIT]
            # External id values are free text: quoted and escaped (backslash, quote), unlike record ids.
            soql = (
                f"SELECT Id, {s.external_id_field} FROM {s.sobject} "
                f"WHERE {s.external_id_field} IN ({', '.join(sf.soql_string(v) for v in chunk)})"
            )
            try:
                found = self.query(soql)
            except (TransientError, CrmRejected, httpx.TransportError) as error:
                fail(set().union(*(owners[v] for v in chunk)), f"finding the records failed: {_safe_reason(error)}")
                continue
            for row in found:
                keys = by_folded.get(str(row.get(s.external_id_field) or "").lower())
                if keys and row.get("Id"):
                    records.setdefault(str(row["Id"]), set()).update(keys)

        ids = list(records)
        for start in range(0, len(ids), sf.COLLECTION_LIMIT):
            chunk_ids = ids[start : start + sf.COLLECTION_LIMIT]
            # JSON null clears a field in the REST API (`fieldsToNull` is the SOAP API's way, not REST's).
            cleared = [
                {"attributes": {"type": s.sobject}, "Id": i, **dict.fromkeys(self._community_fields(), None)}
                for i in chunk_ids
            ]
            try:
                answer = self.update(cleared)
            except (TransientError, CrmRejected, httpx.TransportError) as error:
                for record_id in chunk_ids:
                    fail(records[record_id], f"clearing record {record_id} failed: {_safe_reason(error)}")
                continue
            if len(answer) != len(chunk_ids):
                for record_id in chunk_ids:
                    fail(records[record_id], "Salesforce's answer did not hold one result per record")
                continue
            for record_id, item in zip(chunk_ids, answer, strict=True):
                if sf.item_failure(item) is not None:
                    codes = ", ".join(sorted(sf.error_codes(item) - {"None"})) or "not reported as saved"
                    fail(records[record_id], f"clearing record {record_id} failed: {codes}")
        return failed

    def _community_fields(self) -> tuple[str, ...]:
        """The fields `push` writes that hold community data, the external id included."""
        return (
            sf.SCORE_FIELD,
            sf.TIER_FIELD,
            sf.TIER_CHANGED_AT_FIELD,
            sf.LAST_ACTIVITY_AT_FIELD,
            self.settings.external_id_field,
        )

    def _owners(self, record_ids: list[str]) -> dict[str, str]:
        soql = f"SELECT Id, OwnerId FROM {self.settings.sobject} WHERE Id IN {sf.soql_id_list(record_ids)}"
        return {str(r["Id"]): str(r.get("OwnerId") or "") for r in self.query(soql)}

    def describe(self, sobject: str | None = None) -> dict[str, Any]:
        """`GET /sobjects/{SObject}/describe`: the object's fields as the integration user sees them."""
        answer = self._call("GET", f"{self.data_path}/sobjects/{sobject or self.settings.sobject}/describe")
        if not isinstance(answer, dict):
            raise CrmRejected("Salesforce's describe answer is not an object")
        return answer

    # Set-up (engagement salesforce setup) -----------------------------------------------------

    def tooling_query(self, soql: str) -> list[dict[str, Any]]:
        """A Tooling API query (`/tooling/query`), all pages."""
        records: list[dict[str, Any]] = []
        answer = self._call("GET", f"{self.data_path}/tooling/query", params={"q": soql})
        while True:
            if not isinstance(answer, dict) or not isinstance(answer.get("records"), list):
                raise CrmRejected("Salesforce's tooling query answer has no records list")
            records.extend(answer["records"])
            next_url = answer.get("nextRecordsUrl")
            if answer.get("done", True) or not next_url or not str(next_url).startswith("/services/data/"):
                return records
            answer = self._call("GET", str(next_url))

    def create_custom_field(self, full_name: str, metadata: dict[str, Any]) -> str:
        """`POST /tooling/sobjects/CustomField`: one field, created synchronously; returns its id."""
        answer = self._call(
            "POST",
            f"{self.data_path}/tooling/sobjects/CustomField",
            {"FullName": full_name, "Metadata": metadata},
            creates=True,
        )
        reason = sf.item_failure(answer)
        if reason:
            raise CrmRejected(f"creating {full_name}: {reason}")
        return str(answer["id"])

    def create(self, records: list[dict[str, Any]]) -> list[Any]:
        """sObject Collections create (`POST /composite/sobjects`), 200 per call; the per-record results."""
        results: list[Any] = []
        for start in range(0, len(records), sf.COLLECTION_LIMIT):
            chunk = records[start : start + sf.COLLECTION_LIMIT]
            answer = self._call(
                "POST", f"{self.data_path}/composite/sobjects", {"allOrNone": False, "records": chunk}, creates=True
            )
            results.extend(answer if isinstance(answer, list) else [None] * len(chunk))
        return results

    # Inbound ---------------------------------------------------------------------------------

    def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query, following `nextRecordsUrl` page by page."""
        records: list[dict[str, Any]] = []
        for page in self.query_pages(soql):
            records.extend(page)
        return records

    def query_pages(self, soql: str) -> Any:
        answer = self._call("GET", f"{self.data_path}/query", params={"q": soql})
        while True:
            if not isinstance(answer, dict) or not isinstance(answer.get("records"), list):
                raise CrmRejected("Salesforce's query answer has no records list")
            yield answer["records"]
            next_url = answer.get("nextRecordsUrl")
            if answer.get("done", True) or not next_url:
                return
            if not str(next_url).startswith("/services/data/"):
                raise CrmRejected(f"unexpected nextRecordsUrl {next_url!r}")
            answer = self._call("GET", str(next_url))

    def update(self, records: list[dict[str, Any]]) -> list[Any]:
        """sObject Collections update (records carry `Id`), 200 per call; returns the per-record results."""
        results: list[Any] = []
        for start in range(0, len(records), sf.COLLECTION_LIMIT):
            chunk = records[start : start + sf.COLLECTION_LIMIT]
            answer = self._call("PATCH", f"{self.data_path}/composite/sobjects", {"allOrNone": False, "records": chunk})
            results.extend(answer if isinstance(answer, list) else [None] * len(chunk))
        return results


def _safe_reason(error: Exception) -> str:
    """Why a call failed, without Salesforce's message: it can quote the query, and so the external id values."""
    if isinstance(error, Refused):
        return f"Salesforce answered {error.status} {error.code or ''}".strip()
    if isinstance(error, LimitExceeded):
        return "Salesforce API limit reached (REQUEST_LIMIT_EXCEEDED)"
    if isinstance(error, httpx.TransportError):
        return f"Salesforce did not answer ({type(error).__name__}, after retries)"
    text = str(error)
    if isinstance(error, TransientError) and text.startswith("Salesforce answered"):
        return text.split(":", 1)[0] + " (after retries)"  # "Salesforce answered 503"; the body is dropped
    return text  # the adapter's own messages, which quote nothing sent


def from_secret(secret_text: str, settings: SalesforceSettings, client: httpx.Client | None = None) -> Salesforce:
    http = client or httpx.Client(timeout=DEFAULT_TIMEOUT)
    return Salesforce(Auth(Credentials.from_secret(secret_text), http), settings, http)


def salesforce_from_env() -> Salesforce:
    """The adapter from SALESFORCE_CREDENTIALS (or its _ARN) and the SALESFORCE_* settings."""
    from engagement.adapters.secrets import get_secret
    from engagement.handlers.errors import NotConfigured

    secret = get_secret(SALESFORCE_CREDENTIALS)
    if not secret:
        raise NotConfigured(
            "no Salesforce credentials are configured: set SALESFORCE_CREDENTIALS (JSON with login_url, client_id, "
            "client_secret) or SALESFORCE_CREDENTIALS_ARN"
        )
    try:
        return from_secret(secret, SalesforceSettings.from_env())
    except SalesforceConfigError as error:
        raise NotConfigured(str(error)) from error
