"""HubSpot CRM v3 over httpx: batch upsert of contacts by email, tasks for tier entries, property setup.

Limits and shapes from HubSpot's documentation: batch endpoints take at most 100 inputs; a private
app may make 100 requests per 10 seconds (190 on Professional and Enterprise) and the search
endpoints 4 per second, so every request first passes a client-side limiter; a 429 carries the
policy that was hit and, where given, `Retry-After` in seconds; 5xx answers are transient.

A 2xx or 207 batch answer is checked item by item: an input missing from `results` counts as failed
(with the reasons from `errors`), so its stream record is retried rather than silently marked done.
A batch refused with 400 is split in halves until the bad input is alone, so one malformed email
cannot block the other 99. A 409 names the existing contact, which is then updated by id.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import stamina

from engagement.domain.crm import COMMUNITY_PROPERTIES, Forgotten, MemberChange
from engagement.domain.identity import MERGED_TIER

BATCH_LIMIT = 100
TASK_TO_CONTACT = 204  # HubSpot-defined association type: task -> contact
DEFAULT_RETRY_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 20.0
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
UPDATE_PATH = "/crm/v3/objects/contacts/batch/update"
READ_CONTACTS_PATH = "/crm/v3/objects/contacts/batch/read"
TASKS_PATH = "/crm/v3/objects/tasks/batch/create"
PROPERTY_GROUP = "community_engagement"
EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")


class TransientError(Exception):
    """A 429 or 5xx answer, or a network failure: worth another attempt."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CrmRejected(Exception):
    """A 4xx other than 429: retrying the same request will not help."""

    def __init__(self, message: str, status: int = 400, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


@dataclass
class PushResult:
    pushed: set[str] = field(default_factory=set)  # member ids
    failed: dict[str, str] = field(default_factory=dict)  # member id -> reason
    calls: int = 0
    # Optional for adapters: the CRM record each pushed member landed on, and members deliberately not sent
    # (e.g. a second member with the same email: the CRM holds one contact per email) with the reason.
    records: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


class RateLimiter:
    """Sliding-window limits, e.g. [(100, 10.0), (10, 1.0)]: at most 100 calls in any 10 s and 10 in any 1 s.

    Per process: concurrent Lambda instances each keep their own budget, which is why the CRM sync
    function's concurrency is reserved low (infra) and 429s are still honoured.
    """

    def __init__(
        self,
        windows: Sequence[tuple[int, float]],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.windows = [(limit, period, deque[float]()) for limit, period in windows]
        self.clock = clock
        self.sleep = sleep
        self.waited = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            while True:
                now = self.clock()
                wait = 0.0
                for limit, period, stamps in self.windows:
                    while stamps and stamps[0] <= now - period:
                        stamps.popleft()
                    if len(stamps) >= limit:
                        wait = max(wait, stamps[0] + period - now)
                if wait <= 0:
                    for _, _, stamps in self.windows:
                        stamps.append(now)
                    return
                self.waited += wait
                self.sleep(wait)


def _backoff(error: Exception) -> bool | float:
    if isinstance(error, TransientError):
        return error.retry_after if error.retry_after is not None else True
    return isinstance(error, httpx.TransportError)


def normalize_email(email: str) -> str:
    return email.strip().lower()


class HubSpot:
    name = "hubspot"

    def __init__(
        self,
        token: str,
        base_url: str,
        client: httpx.Client | None = None,
        attempts: int = 6,
        limiter: RateLimiter | None = None,
        search_limiter: RateLimiter | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.attempts = attempts
        self.limiter = limiter or RateLimiter([(100, 10.0), (10, 1.0)])
        # Search requests count against the general budget too, and have their own per-second cap.
        self.search_limiter = search_limiter or RateLimiter([(4, 1.0)])
        self.calls = 0

    # Transport ------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, search: bool = False) -> Any:
        """One HubSpot call, limited and retried on 429/5xx/network errors; raises CrmRejected on other 4xx."""
        # 30 s of retrying per call: a stream batch makes at most three calls (upsert, owners, tasks), which keeps
        # the worst case inside the CRM sync's 2-minute timeout, so a 429 storm fails records instead of timing out.
        for attempt in stamina.retry_context(on=_backoff, attempts=self.attempts, timeout=30.0, wait_max=10.0):
            with attempt:
                if search:
                    self.search_limiter.acquire()
                self.limiter.acquire()
                self.calls += 1
                response = self.client.request(method, self.base_url + path, json=body, headers=self.headers)
                if response.status_code == 429 or response.status_code >= 500:
                    raise TransientError(
                        f"HubSpot answered {response.status_code}: {response.text[:200]}", _retry_after(response)
                    )
                if response.status_code >= 400:
                    raise CrmRejected(
                        f"HubSpot answered {response.status_code}: {response.text[:500]}",
                        response.status_code,
                        _json(response),
                    )
                return response.json() if response.content else {}
        raise AssertionError("unreachable: stamina re-raises the last error")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body)  # type: ignore[no-any-return]

    # Outbound -------------------------------------------------------------------------------

    def push(self, changes: Sequence[MemberChange]) -> PushResult:
        """Upsert every change's contact by email, then create one task per tier entry.

        Emails are trimmed and lower-cased; when two members share one, the newer change is sent and the
        other reported in `skipped`. A change for a member merged into another (tier `Merged`) never wins over
        one that is not: versions of different members are not comparable. Returns which members landed and why
        the others did not; raises nothing for refused input, so the caller can retry just the failed members.
        """
        result = PushResult()
        calls_before = self.calls
        chosen: dict[str, MemberChange] = {}
        for change in changes:
            email = normalize_email(change.email)
            change = replace(change, email=email)
            other = chosen.get(email)
            if other is None or _precedence(change) > _precedence(other):
                if other is not None:
                    result.skipped[other.member_id] = f"member {change.member_id} has the same email; it was sent"
                chosen[email] = change
            else:
                result.skipped[change.member_id] = f"member {other.member_id} has the same email; it was sent"
        unique = list(chosen.values())
        for start in range(0, len(unique), BATCH_LIMIT):
            self._upsert(unique[start : start + BATCH_LIMIT], result)

        tasks = [c for c in unique if c.entered_task_tier and c.member_id in result.pushed]
        for start in range(0, len(tasks), BATCH_LIMIT):
            self._create_tasks(tasks[start : start + BATCH_LIMIT], result)
        result.calls = self.calls - calls_before
        return result

    def _upsert(self, batch: list[MemberChange], result: PushResult) -> None:
        inputs = [
            {
                "idProperty": "email",
                "id": c.email,
                # objectWriteTraceId comes back on each result and error, tying it to its member.
                "objectWriteTraceId": c.member_id,
                "properties": {"email": c.email, **c.properties()},
            }
            for c in batch
        ]
        try:
            answer = self._post(UPSERT_PATH, {"inputs": inputs})
        except CrmRejected as error:
            if len(batch) > 1 and error.status in (400, 409):
                # One bad input refuses the whole batch: split until it stands alone.
                middle = len(batch) // 2
                self._upsert(batch[:middle], result)
                self._upsert(batch[middle:], result)
            elif error.status == 409:
                self._update_existing(batch[0], error, result)
            else:
                result.failed.update({c.member_id: str(error) for c in batch})
            return
        except (TransientError, httpx.TransportError) as error:
            result.failed.update({c.member_id: str(error) for c in batch})
            return
        self._check_results(batch, answer, result)

    def _update_existing(self, change: MemberChange, error: CrmRejected, result: PushResult) -> None:
        """A 409 names the contact that already holds the email: update that one by id."""
        found = EXISTING_ID.search(str(error.body.get("message") or error))
        if not found:
            result.failed[change.member_id] = str(error)
            return
        inputs = [{"id": found.group(1), "objectWriteTraceId": change.member_id, "properties": change.properties()}]
        try:
            answer = self._post(UPDATE_PATH, {"inputs": inputs})
        except (TransientError, CrmRejected, httpx.TransportError) as retry_error:
            result.failed[change.member_id] = (
                f"conflict on {change.email}, and updating the existing contact failed: {retry_error}"
            )
            return
        self._check_results([change], answer, result, fallback_id=found.group(1))

    def _check_results(
        self, batch: list[MemberChange], answer: dict[str, Any], result: PushResult, fallback_id: str | None = None
    ) -> None:
        ids = _record_ids(answer)
        if fallback_id and any(str(item.get("id")) == fallback_id for item in answer.get("results") or []):
            ids.setdefault(batch[0].member_id, fallback_id)
        reasons = _error_reasons(answer)
        for change in batch:
            record_id = ids.get(change.member_id) or ids.get(change.email)
            if record_id is None:
                why = reasons.get(change.member_id) or reasons.get(change.email) or reasons.get("*")
                result.failed[change.member_id] = why or "HubSpot's answer did not include this contact"
                continue
            result.pushed.add(change.member_id)
            result.records[change.member_id] = record_id

    def _create_tasks(self, batch: list[MemberChange], result: PushResult) -> None:
        contact_ids = {c.member_id: result.records[c.member_id] for c in batch}
        try:
            owners = self._owners(list(contact_ids.values()))
            inputs = [
                self._task_input(c, contact_ids[c.member_id], owners.get(contact_ids[c.member_id])) for c in batch
            ]
            answer = self._post(TASKS_PATH, {"inputs": inputs})
        except (TransientError, CrmRejected, httpx.TransportError) as error:
            for change in batch:
                result.pushed.discard(change.member_id)
                result.failed[change.member_id] = f"contact updated but the task failed: {error}"
            return
        created = _record_ids(answer)
        results = answer.get("results") or []
        if not created and not answer.get("errors") and len(results) == len(batch):
            # No trace ids echoed: a complete answer with one result per input means every task exists. Counting
            # them failed would release their claims and create them twice on the retry.
            created = {c.member_id: str(r.get("id")) for c, r in zip(batch, results, strict=True)}
        reasons = _error_reasons(answer)
        for change in batch:
            if change.member_id not in created:
                result.pushed.discard(change.member_id)
                why = reasons.get(change.member_id) or reasons.get("*") or "HubSpot's answer did not include the task"
                result.failed[change.member_id] = f"contact updated but the task failed: {why}"

    def _owners(self, contact_ids: list[str]) -> dict[str, str]:
        """`hubspot_owner_id` of each contact that has one (one batch read for up to 100 contacts)."""
        answer = self._post(
            READ_CONTACTS_PATH, {"properties": ["hubspot_owner_id"], "inputs": [{"id": i} for i in contact_ids]}
        )
        owners: dict[str, str] = {}
        for item in answer.get("results") or []:
            owner = (item.get("properties") or {}).get("hubspot_owner_id")
            if item.get("id") is not None and owner:
                owners[str(item["id"])] = str(owner)
        return owners

    def _task_input(self, change: MemberChange, contact_id: str, owner_id: str | None) -> dict[str, Any]:
        properties = {
            "hs_timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "hs_task_subject": change.task_subject(),
            "hs_task_body": change.task_body(),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH" if change.tier == "Champion" else "MEDIUM",
            "hs_task_type": "TODO",  # HubSpot's enum value for a to-do task, not a marker
        }
        if owner_id:
            properties["hubspot_owner_id"] = owner_id
        return {
            "objectWriteTraceId": change.member_id,
            "properties": properties,
            "associations": [
                {
                    "to": {"id": contact_id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}],
                }
            ],
        }

    # Forgetting -------------------------------------------------------------------------------

    def clear(self, people: Sequence[Forgotten]) -> PushResult:
        """Empty the community properties of every contact a forgotten person had; never creates a contact.

        Two steps, because HubSpot may refuse a batch *update* by email ("Unable to perform update/upsert by
        non-unique 0-1 property email"): a batch read by `idProperty: email` per 100 addresses finds the contacts,
        then a batch update by contact id per 100 contacts empties the properties (an empty string clears a
        HubSpot property). An email with no contact comes back from the read as an OBJECT_NOT_FOUND error:
        nothing to clear, so it counts as done. A person is in `pushed` when each of their emails was cleared or
        not found, else in `failed` with a reason naming the contact by position ("contact 2 of 3") or HubSpot's
        category, never the address.
        """
        result = PushResult()
        calls_before = self.calls
        known_by = {p.key: list(dict.fromkeys(normalize_email(e) for e in p.emails if e.strip())) for p in people}
        # Each address once: a batch naming one twice is refused whole, and two people may share one.
        emails = list(dict.fromkeys(e for mine in known_by.values() for e in mine))
        problems: dict[str, str] = {}  # email -> why it was not cleared
        holders: dict[str, list[str]] = {}  # contact id -> the emails that found it
        for start in range(0, len(emails), BATCH_LIMIT):
            found, failed = self._find_contacts(emails[start : start + BATCH_LIMIT])
            problems.update(failed)
            for contact_id, addresses in found.items():
                holders.setdefault(contact_id, []).extend(addresses)
        contact_ids = list(holders)
        for start in range(0, len(contact_ids), BATCH_LIMIT):
            for contact_id, why in self._clear_contacts(contact_ids[start : start + BATCH_LIMIT]).items():
                for email in holders[contact_id]:
                    problems.setdefault(email, why)

        for person in people:
            mine = known_by[person.key]
            reasons = [f"contact {n} of {len(mine)}: {problems[e]}" for n, e in enumerate(mine, 1) if e in problems]
            if reasons:
                result.failed[person.key] = "; ".join(reasons)
            else:
                result.pushed.add(person.key)
        result.calls = self.calls - calls_before
        return result

    def _find_contacts(self, emails: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
        """One batch read by email: contact id -> the emails that found it, and email -> why it could not be looked up.

        An address in neither has no contact (OBJECT_NOT_FOUND): nothing to clear.
        """
        body = {"idProperty": "email", "properties": ["email"], "inputs": [{"id": email} for email in emails]}
        try:
            answer = self._post(READ_CONTACTS_PATH, body)
        except (CrmRejected, TransientError, httpx.TransportError) as error:
            return {}, dict.fromkeys(emails, "finding the contact failed: " + _failure(error, "lookup"))
        sent = set(emails)
        found: dict[str, list[str]] = {}
        anonymous: list[str] = []  # contact ids whose echoed email is not one we sent
        done: set[str] = set()
        for item in answer.get("results") or []:
            if item.get("id") is None:
                continue
            contact_id = str(item["id"])
            email = normalize_email(str((item.get("properties") or {}).get("email") or ""))
            if email in sent:
                found.setdefault(contact_id, []).append(email)
                done.add(email)
            else:
                anonymous.append(contact_id)
        problems: dict[str, str] = {}
        unattributed: str | None = None
        for error in answer.get("errors") or []:
            category = str(error.get("category") or "ERROR")
            named = _context_ids(error, sent)
            if not named and category != "OBJECT_NOT_FOUND":
                unattributed = unattributed or category
            for email in named:
                if category == "OBJECT_NOT_FOUND":
                    done.add(email)  # no contact has this address: nothing of the person is in HubSpot under it
                else:
                    problems.setdefault(email, f"finding the contact failed: {category}")
        missing = [e for e in emails if e not in done and e not in problems]
        if missing and unattributed is None and len(set(anonymous)) == len(missing):
            # Results that echo another address (e.g. found by a secondary email): one contact per missing input,
            # so clearing all of them clears the missing ones; each of those emails waits on every one of them.
            for contact_id in dict.fromkeys(anonymous):
                found.setdefault(contact_id, []).extend(missing)
            missing = []
        for email in missing:
            problems[email] = "finding the contact failed: " + (
                unattributed or "HubSpot's answer did not include this contact"
            )
        return found, problems

    def _clear_contacts(self, contact_ids: list[str]) -> dict[str, str]:
        """One batch update by contact id; contact id -> reason for each that was neither cleared nor gone."""
        cleared = dict.fromkeys(COMMUNITY_PROPERTIES, "")
        inputs = [{"id": contact_id, "properties": cleared} for contact_id in contact_ids]
        try:
            answer = self._post(UPDATE_PATH, {"inputs": inputs})
        except (CrmRejected, TransientError, httpx.TransportError) as error:
            return dict.fromkeys(contact_ids, _failure(error, "update"))
        sent = set(contact_ids)
        done: set[str] = set()
        anonymous_results = 0
        for item in answer.get("results") or []:
            if str(item.get("id")) in sent:
                done.add(str(item["id"]))
            else:
                anonymous_results += 1
        problems: dict[str, str] = {}
        unattributed: str | None = None
        for error in answer.get("errors") or []:
            category = str(error.get("category") or "ERROR")
            named = _context_ids(error, sent, normalize=False)
            if not named and category != "OBJECT_NOT_FOUND":
                unattributed = unattributed or category
            for contact_id in named:
                if category == "OBJECT_NOT_FOUND":
                    done.add(contact_id)  # deleted since the read: nothing left to clear
                else:
                    problems.setdefault(contact_id, category)
        missing = [i for i in contact_ids if i not in done and i not in problems]
        if missing and unattributed is None and anonymous_results == len(missing):
            missing = []  # results without ids: one per updated input, so these are the missing ones
        for contact_id in missing:
            problems[contact_id] = unattributed or "HubSpot's answer did not include this contact"
        return problems

    # Setup ------------------------------------------------------------------------------------

    def setup_properties(self) -> dict[str, str]:
        """Create the property group and the custom contact properties; 409 means it exists already.

        Returns what happened to each (`created` or `exists`). Safe to run any number of times.
        """
        outcome: dict[str, str] = {}
        group = {"name": PROPERTY_GROUP, "label": "Community engagement", "displayOrder": -1}
        outcome[f"group {PROPERTY_GROUP}"] = self._create_once("/crm/v3/properties/contacts/groups", group)
        for prop in CONTACT_PROPERTIES:
            outcome[prop["name"]] = self._create_once(
                "/crm/v3/properties/contacts", {**prop, "groupName": PROPERTY_GROUP}
            )
        return outcome

    def _create_once(self, path: str, body: dict[str, Any]) -> str:
        try:
            self._post(path, body)
        except CrmRejected as error:
            if error.status == 409:
                return "exists"
            raise
        return "created"


CONTACT_PROPERTIES: tuple[dict[str, Any], ...] = (
    {
        "name": "community_score",
        "label": "Community score",
        "type": "number",
        "fieldType": "number",
        "description": "Decayed community engagement score",
    },
    {
        "name": "community_tier",
        "label": "Community tier",
        "type": "string",
        "fieldType": "text",
        "description": "Community tier (Champion, Power User, Active, Casual, Lurker)",
    },
    {
        "name": "community_tier_changed_at",
        "label": "Community tier changed at",
        "type": "datetime",
        "fieldType": "date",
        "description": "When the member entered the current community tier",
    },
    {
        "name": "community_last_activity_at",
        "label": "Community last activity at",
        "type": "datetime",
        "fieldType": "date",
        "description": "When the member last did something in the community",
    },
)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        # Capped so a long pause cannot outlast the function's timeout; the record is retried later.
        return min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(value)))
    except ValueError:
        return DEFAULT_RETRY_SECONDS


def _record_ids(answer: dict[str, Any]) -> dict[str, str]:
    """Record ids of a batch answer, keyed by the trace id we sent and by email."""
    ids: dict[str, str] = {}
    for item in answer.get("results") or []:
        if item.get("id") is None:
            continue
        if item.get("objectWriteTraceId"):
            ids[str(item["objectWriteTraceId"])] = str(item["id"])
        email = normalize_email(str((item.get("properties") or {}).get("email") or ""))
        if email:
            ids[email] = str(item["id"])
    return ids


def _error_reasons(answer: dict[str, Any]) -> dict[str, str]:
    """Reasons from a 207's `errors`, keyed by the trace ids or emails they name (`*` for unattributed)."""
    reasons: dict[str, str] = {}
    for error in answer.get("errors") or []:
        message = f"{error.get('category') or 'ERROR'}: {error.get('message') or 'no message'}"
        names: list[str] = []
        if error.get("objectWriteTraceId"):
            names.append(str(error["objectWriteTraceId"]))
        context = error.get("context") or {}
        if isinstance(context, dict):
            for values in context.values():
                if isinstance(values, list):
                    names.extend(normalize_email(str(v)) for v in values)
        for name in names or ["*"]:
            reasons.setdefault(name, message)
    return reasons


def _precedence(change: MemberChange) -> tuple[bool, int, float]:
    """Which of two changes for one email is sent: a merged member's never beats a live one's, then the newer."""
    return (change.tier != MERGED_TIER, change.version, change.score)


def _failure(error: Exception, step: str) -> str:
    """Why a clear call failed, without HubSpot's message (it may quote the inputs, i.e. the emails)."""
    if isinstance(error, CrmRejected):
        return f"HubSpot refused the {step} ({error.status} {error.body.get('category') or 'error'})"
    if isinstance(error, TransientError):
        return str(error).split(":", 1)[0] + " (after retries)"  # "HubSpot answered 503"; the body is not kept
    return f"HubSpot did not answer ({type(error).__name__}, after retries)"


def _context_ids(error: dict[str, Any], sent: set[str], normalize: bool = True) -> list[str]:
    """The sent ids (emails, or contact ids) a 207 error names in its `context` lists (`{"ids": [...]}`)."""
    named: list[str] = []
    context = error.get("context") or {}
    if isinstance(context, dict):
        for values in context.values():
            if isinstance(values, list):
                for value in values:
                    text = normalize_email(str(value)) if normalize else str(value)
                    if text in sent:
                        named.append(text)
    return list(dict.fromkeys(named))
