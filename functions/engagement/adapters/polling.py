"""The one mechanism every poller shares: bounded runs, polite HTTP, cursors that never skip.

A `Source` knows one platform: which streams to read (a Discord channel, Circle's posts, a Meetup
group), how to start a stream at a date, and how to fetch the page after a cursor state, mapped to
activities. `Poller.run` does the rest, the same way for every platform and for `engagement
backfill`:

- Bounded work: at most `Budget.max_pages` pages per run, and never past the deadline taken from
  the Lambda context's remaining time (minus a reserve), including time spent waiting out limits.
- Polite HTTP (`HttpFetcher`): a 429 or 5xx (or a transport error) is retried after the wait the
  vendor asks for (`Retry-After`, Discord's `X-RateLimit-Reset-After` and body `retry_after`), or
  with exponential backoff; an exhausted bucket (`X-RateLimit-Remaining: 0`) is waited out before
  the next request. A wait that would overrun the deadline ends the run instead (`OutOfTime`).
- Never skipping: a page's items are all stored (idempotently, through `Store.record`: a page
  fetched twice counts once) before its cursor is written, and the cursor write is conditional on
  the version read. A failure at any point leaves the cursor at the last page fully stored, so the
  next run fetches the failed page again.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from engagement.adapters.cursors import CursorConflict, CursorStore
from engagement.adapters.dynamo import Store
from engagement.domain.activity import Activity, Ignored, PayloadShapeError
from engagement.domain.taxonomy import Taxonomy

DEFAULT_MAX_PAGES = 50
# Kept back from the Lambda deadline for the last page's writes and the cursor write.
DEADLINE_RESERVE_SECONDS = 20.0
MAX_ATTEMPTS = 5
BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 120.0


class OutOfTime(Exception):
    """The run's deadline would pass before the next request could be made."""


class PollFailed(Exception):
    """The platform refused the request (4xx) or kept failing after every retry."""


class Budget:
    """Pages and time one run may spend."""

    def __init__(
        self,
        max_pages: int = DEFAULT_MAX_PAGES,
        seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pages = max_pages
        self.clock = clock
        self.deadline = None if seconds is None else clock() + seconds
        self.pages = 0

    @classmethod
    def from_context(cls, context: Any, max_pages: int = DEFAULT_MAX_PAGES) -> Budget:
        """The Lambda context's remaining time, less a reserve for the final writes."""
        remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else None
        return cls(max_pages, None if remaining is None else max(0.0, remaining - DEADLINE_RESERVE_SECONDS))

    def seconds_left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - self.clock()

    def can_fetch(self) -> bool:
        return self.pages < self.max_pages and self.seconds_left() > 0


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The wait a response asks for: the largest of `Retry-After` (seconds or an HTTP date),
    `X-RateLimit-Reset-After` and a JSON body's `retry_after` (Discord), or None."""
    hints: list[float] = []
    header = response.headers.get("Retry-After")
    if header:
        try:
            hints.append(float(header))
        except ValueError:
            try:
                moment = parsedate_to_datetime(header)
                hints.append((moment - (now or datetime.now(UTC))).total_seconds())
            except (TypeError, ValueError):
                pass
    reset_after = response.headers.get("X-RateLimit-Reset-After")
    if reset_after:
        with contextlib.suppress(ValueError):
            hints.append(float(reset_after))
    if "json" in response.headers.get("Content-Type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
        value = body.get("retry_after") if isinstance(body, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            hints.append(float(value))
    hints = [h for h in hints if math.isfinite(h)]
    return max(0.0, max(hints)) if hints else None


class HttpFetcher:
    """httpx with the retry policy of every poller; `sleep` and the budget's clock are injectable."""

    def __init__(
        self,
        client: httpx.Client,
        budget: Budget,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
        retryable: Callable[[httpx.Response], float | None] | None = None,
    ) -> None:
        self.client = client
        self.budget = budget
        self.sleep = sleep
        self.max_attempts = max_attempts
        # A platform hook for limits signalled without a 429 (Meetup's GraphQL errors): a wait, or None.
        self.retryable = retryable
        self.not_before: float | None = None
        self.requests = 0
        self.waits: list[float] = []

    def _wait(self, seconds: float) -> None:
        if seconds > self.budget.seconds_left():
            raise OutOfTime(f"the platform asks us to wait {seconds:.1f}s, past this run's deadline")
        self.waits.append(seconds)
        self.sleep(seconds)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The response to a request, after waiting out rate limits and retrying 429, 5xx and transport errors.

        Raises:
            OutOfTime: a wait would overrun the deadline.
            PollFailed: a 4xx other than 429, or every attempt failed.
        """
        if self.not_before is not None:
            pending = self.not_before - self.budget.clock()
            self.not_before = None
            if pending > 0:
                self._wait(pending)
        last = "no attempt made"
        for attempt in range(self.max_attempts):
            backoff = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2**attempt) * random.uniform(0.5, 1.0)
            try:
                self.requests += 1
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as error:
                last = f"{type(error).__name__}: {error}"
                wait = backoff
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    last = f"HTTP {status} from {response.request.url.path}"
                    hinted = retry_after_seconds(response)
                    wait = hinted if hinted is not None else backoff
                elif status >= 400:
                    raise PollFailed(f"HTTP {status} from {response.request.url.path}: {response.text[:200]}")
                else:
                    hinted = self.retryable(response) if self.retryable else None
                    if hinted is None:
                        self._pace(response)
                        return response
                    last = f"rate limited by {response.request.url.path}"
                    wait = hinted
            if attempt + 1 < self.max_attempts:
                self._wait(wait)
        raise PollFailed(f"gave up after {self.max_attempts} attempts: {last}")

    def _pace(self, response: httpx.Response) -> None:
        """An exhausted bucket is waited out before the next request rather than answered with a 429."""
        if response.headers.get("X-RateLimit-Remaining") == "0":
            reset_after = retry_after_seconds(response)
            if reset_after:
                self.not_before = self.budget.clock() + reset_after


@dataclass(frozen=True)
class Entry:
    """One mapped item of a page, with the platform record it came from (stored as its raw payload)."""

    outcome: Activity | Ignored
    raw: Any


def mapped(classify: Callable[[], Activity | Ignored], raw: Any) -> Entry:
    """An entry for one record; a record the mapping cannot read is ignored with the reason, so one malformed
    item never blocks its stream (a failing page would be fetched again forever)."""
    try:
        return Entry(classify(), raw)
    except (PayloadShapeError, AttributeError, TypeError, ValueError) as error:
        return Entry(Ignored("malformed", f"the record cannot be read: {error}"), raw)


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    cursor: dict[str, Any]  # the state once every entry of this page is stored
    more: bool  # whether another page is available right now


class Source(Protocol):
    platform: str

    def headers(self) -> dict[str, str]:
        """The headers (auth, user agent) every request to the platform carries."""

    def not_configured(self) -> str | None:
        """Why this source cannot run (no token, no channels), or None."""

    def streams(self) -> list[str]:
        """The independent streams to read, each with its own cursor."""

    def start(self, stream: str, since: datetime) -> dict[str, Any]:
        """The cursor state that reads `stream` from `since` on."""

    def fetch(self, stream: str, state: dict[str, Any], http: HttpFetcher, taxonomy: Taxonomy, now: datetime) -> Page:
        """The page after `state`."""


@dataclass
class StreamSummary:
    stream: str
    status: str = "caught_up"  # caught_up | budget | out_of_time | failed | conflict
    pages: int = 0
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    error: str | None = None


@dataclass
class PollSummary:
    platform: str
    status: str  # ok | partial | failed | not_configured
    streams: list[StreamSummary] = field(default_factory=list)
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "status": self.status,
            **({"reason": self.reason} if self.reason else {}),
            "streams": [asdict(s) for s in self.streams],
        }


def cursor_id(platform: str, stream: str, prefix: str = "") -> str:
    return f"{prefix}{platform}:{stream}"


class Poller:
    """Reads every stream of a source from its cursor, storing what it maps to, within a budget."""

    def __init__(
        self,
        source: Source,
        *,
        store: Store,
        cursors: CursorStore,
        http: HttpFetcher,
        taxonomy: Taxonomy,
        clock: Callable[[], datetime],
        start_at: datetime,
        cursor_prefix: str = "",
    ) -> None:
        self.source = source
        self.store = store
        self.cursors = cursors
        self.http = http
        self.taxonomy = taxonomy
        self.clock = clock
        self.start_at = start_at
        self.cursor_prefix = cursor_prefix

    def run(self, progress: Callable[[StreamSummary, Page], None] | None = None) -> PollSummary:
        reason = self.source.not_configured()
        if reason:
            return PollSummary(self.source.platform, "not_configured", reason=reason)
        summary = PollSummary(self.source.platform, "ok")
        for stream in self.source.streams():
            summary.streams.append(self._stream(stream, progress))
        statuses = {s.status for s in summary.streams}
        if "failed" in statuses:
            summary.status = "failed"
        elif statuses - {"caught_up"}:
            summary.status = "partial"
        return summary

    def _stream(self, stream: str, progress: Callable[[StreamSummary, Page], None] | None) -> StreamSummary:
        result = StreamSummary(stream)
        key = cursor_id(self.source.platform, stream, self.cursor_prefix)
        saved = self.cursors.get(key)
        state = saved.state if saved else self.source.start(stream, self.start_at)
        version = saved.version if saved else None
        budget = self.http.budget
        while True:
            if not budget.can_fetch():
                result.status = "budget" if budget.pages >= budget.max_pages else "out_of_time"
                return result
            try:
                page = self.source.fetch(stream, state, self.http, self.taxonomy, self.clock())
            except OutOfTime as error:
                result.status, result.error = "out_of_time", str(error)
                return result
            except (PollFailed, PayloadShapeError) as error:
                result.status, result.error = "failed", str(error)
                return result
            budget.pages += 1
            result.pages += 1
            for entry in page.entries:
                self._store(entry, result)
            try:
                version = self.cursors.put(key, page.cursor, version, self.clock())
            except CursorConflict as error:
                result.status, result.error = "conflict", str(error)
                return result
            state = page.cursor
            if progress:
                progress(result, page)
            if not page.more:
                return result

    def _store(self, entry: Entry, result: StreamSummary) -> None:
        if isinstance(entry.outcome, Ignored):
            result.ignored += 1
            return
        raw = json.dumps(entry.raw, sort_keys=True, default=str).encode("utf-8")
        recorded = self.store.record(entry.outcome, raw, "application/json", self.clock(), self.taxonomy)
        if recorded.status == "duplicate":
            result.duplicates += 1
        else:
            result.stored += 1
