"""HubSpot CRM v3 over httpx: batch upsert of contacts by email, and tasks for tier entries.

Limits and shapes from HubSpot's documentation: batch endpoints take at most 100 inputs; a 429
carries the policy that was hit and, where given, `Retry-After` in seconds; 5xx answers are
transient. A 2xx batch answer is checked item by item: any email missing from `results` counts
as failed, so the stream record is retried rather than silently marked done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import stamina

from engagement.domain.crm import MemberChange

BATCH_LIMIT = 100
TASK_TO_CONTACT = 204  # HubSpot-defined association type: task -> contact
DEFAULT_RETRY_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 20.0


class TransientError(Exception):
    """A 429 or 5xx answer, or a network failure: worth another attempt."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CrmRejected(Exception):
    """A 4xx other than 429: retrying the same request will not help."""


@dataclass
class PushResult:
    pushed: set[str] = field(default_factory=set)  # member ids
    failed: dict[str, str] = field(default_factory=dict)  # member id -> reason
    calls: int = 0


def _backoff(error: Exception) -> bool | float:
    if isinstance(error, TransientError):
        return error.retry_after if error.retry_after is not None else True
    return isinstance(error, httpx.TransportError)


class HubSpot:
    def __init__(
        self,
        token: str,
        base_url: str,
        client: httpx.Client | None = None,
        attempts: int = 6,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.attempts = attempts
        self.calls = 0

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in stamina.retry_context(on=_backoff, attempts=self.attempts, timeout=60.0, wait_max=10.0):
            with attempt:
                self.calls += 1
                response = self.client.post(self.base_url + path, json=body, headers=self.headers)
                if response.status_code == 429 or response.status_code >= 500:
                    raise TransientError(
                        f"HubSpot answered {response.status_code}: {response.text[:200]}", _retry_after(response)
                    )
                if response.status_code >= 400:
                    raise CrmRejected(f"HubSpot answered {response.status_code}: {response.text[:500]}")
                return response.json() if response.content else {}
        raise AssertionError("unreachable: stamina re-raises the last error")

    def push(self, changes: Sequence[MemberChange]) -> PushResult:
        """Upsert every change's contact, then create a task for each tier entry.

        Returns which members landed and why the others did not. Raises nothing for a refused
        batch: its members are reported failed so the caller can retry just them.
        """
        result = PushResult()
        calls_before = self.calls
        for start in range(0, len(changes), BATCH_LIMIT):
            batch = changes[start : start + BATCH_LIMIT]
            # objectWriteTraceId comes back on each result, tying it to its member whatever
            # properties HubSpot chooses to echo.
            inputs = [
                {
                    "idProperty": "email",
                    "id": c.email,
                    "objectWriteTraceId": c.member_id,
                    "properties": {"email": c.email, **c.properties()},
                }
                for c in batch
            ]
            try:
                answer = self._post("/crm/v3/objects/contacts/batch/upsert", {"inputs": inputs})
            except (TransientError, CrmRejected, httpx.TransportError) as error:
                result.failed.update({c.member_id: str(error) for c in batch})
                continue
            contact_ids = _contact_ids(answer)
            for change in batch:
                contact_id = contact_ids.get(change.member_id) or contact_ids.get(change.email)
                if contact_id is None:
                    result.failed[change.member_id] = "HubSpot's answer did not include this contact"
                    continue
                if change.entered_task_tier:
                    try:
                        self.create_task(contact_id, change)
                    except (TransientError, CrmRejected, httpx.TransportError) as error:
                        result.failed[change.member_id] = f"contact updated but the task failed: {error}"
                        continue
                result.pushed.add(change.member_id)
        result.calls = self.calls - calls_before
        return result

    def create_task(self, contact_id: str, change: MemberChange) -> str:
        body = {
            "properties": {
                "hs_timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "hs_task_subject": change.task_subject(),
                "hs_task_body": change.task_body(),
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH" if change.tier == "Champion" else "MEDIUM",
                "hs_task_type": "TODO",  # HubSpot's enum value for a to-do task, not a marker
            },
            "associations": [
                {
                    "to": {"id": contact_id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}],
                }
            ],
        }
        return str(self._post("/crm/v3/objects/tasks", body).get("id", ""))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        # Capped so a long pause cannot outlast the function's timeout; the record is retried later.
        return min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(value)))
    except ValueError:
        return DEFAULT_RETRY_SECONDS


def _contact_ids(answer: dict[str, Any]) -> dict[str, str]:
    """Contact ids of a batch answer, keyed by the trace id we sent and by email."""
    ids: dict[str, str] = {}
    for item in answer.get("results") or []:
        if item.get("id") is None:
            continue
        if item.get("objectWriteTraceId"):
            ids[str(item["objectWriteTraceId"])] = str(item["id"])
        email = str((item.get("properties") or {}).get("email") or "").strip().lower()
        if email:
            ids[email] = str(item["id"])
    return ids
