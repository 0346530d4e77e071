"""Circle's Admin API (v2) as a poller source: posts, comments and attendees of past events.

Auth: `Authorization: Bearer <token>` (an Admin V2 token). Lists are paged with `page` and
`per_page` and answer `{page, per_page, has_next_page, count, page_count, records}`. Circle's API
has no "changed since" filter, so each stream keeps a watermark (the newest item time fully read)
and reads pages in passes:

- a pass starts at page 1 and stores every record newer than the watermark;
- it ends at the last page, or early once a page sorted newest first reaches the watermark (posts
  are asked for `sort=latest`; a list that turns out not to be sorted newest first is read to its
  end, which costs pages but never skips);
- the cursor holds the pass's next page, so an interrupted pass resumes where it stopped; a resumed
  pass first re-reads the page before (records shift down as new ones arrive, and up when one is
  deleted: the overlap absorbs a deletion; repeated records are duplicates and count once);
- the watermark moves to the newest time seen only when a pass completes.

Circle's limits: 2,000 requests per 5 minutes per IP, and a monthly request allowance per plan
(5,000 on Business), which is why the schedule is hourly and the page size the largest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from engagement.adapters.polling import Entry, HttpFetcher, Page, mapped
from engagement.domain import circle
from engagement.domain.activity import PayloadShapeError, parse_timestamp
from engagement.domain.taxonomy import Taxonomy

DEFAULT_BASE_URL = "https://app.circle.so/api/admin/v2"
PER_PAGE = 100
STREAMS = ("posts", "comments", "events")
PATHS = {"posts": "/posts", "comments": "/comments", "events": "/events"}
EXTRA = {"posts": {"status": "published", "sort": "latest"}}

OwnerLookup = Callable[[str], str | None]


def _records(body: Any) -> tuple[list[dict[str, Any]], bool]:
    if isinstance(body, list):  # v1 answered a bare list
        return [r for r in body if isinstance(r, dict)], len(body) >= PER_PAGE
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise PayloadShapeError("Circle returned no records list")
    return [r for r in body["records"] if isinstance(r, dict)], bool(body.get("has_next_page"))


class CircleSource:
    platform = circle.PLATFORM

    def __init__(self, token: str | None, post_owner: OwnerLookup) -> None:
        self.token = token
        self.post_owner = post_owner
        self._resumed: set[str] = set()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def not_configured(self) -> str | None:
        return None if self.token else "no Circle Admin API token is configured (CIRCLE_API_TOKEN)"

    def streams(self) -> list[str]:
        return list(STREAMS)  # posts first, so comments find their post's author

    def start(self, stream: str, since: datetime) -> dict[str, Any]:
        return {"watermark": since.isoformat(), "page": 1, "top": None}

    def fetch(self, stream: str, state: dict[str, Any], http: HttpFetcher, taxonomy: Taxonomy, now: datetime) -> Page:
        page = int(state.get("page") or 1)
        if page > 1 and stream not in self._resumed:
            page -= 1  # resuming a pass in a new run: overlap one page
        self._resumed.add(stream)
        watermark = parse_timestamp(state.get("watermark"), now)
        params = {"page": page, "per_page": PER_PAGE, **EXTRA.get(stream, {})}
        records, has_next = _records(http.request("GET", PATHS[stream], params=params).json())

        entries: list[Entry] = []
        times: list[datetime] = []
        for record in records:
            if stream == "events":
                if not circle.event_ended(record, now):
                    continue
                moment = parse_timestamp(record.get("ends_at") or record.get("starts_at"), now)
            else:
                moment = parse_timestamp(record.get("published_at") or record.get("created_at"), now)
            times.append(moment)
            if moment <= watermark:
                continue
            entries.extend(self._map(stream, record, http, taxonomy, now))

        previous_top = parse_timestamp(state["top"], now) if state.get("top") else None
        top = max(times + ([previous_top] if previous_top else []), default=None)
        newest_first = times == sorted(times, reverse=True)
        finished = not has_next or (newest_first and bool(times) and min(times) <= watermark)
        if finished:
            mark = max(watermark, top) if top else watermark
            return Page(entries, {"watermark": mark.isoformat(), "page": 1, "top": None}, more=False)
        cursor = {"watermark": watermark.isoformat(), "page": page + 1, "top": top.isoformat() if top else None}
        return Page(entries, cursor, more=True)

    def _map(
        self, stream: str, record: dict[str, Any], http: HttpFetcher, taxonomy: Taxonomy, now: datetime
    ) -> list[Entry]:
        if stream == "posts":
            return [mapped(partial(circle.classify_post, record, taxonomy, now), record)]
        if stream == "comments":
            try:
                owner = self.post_owner(circle.post_key(circle.comment_post_id(record)))
            except PayloadShapeError:
                owner = None  # the mapping below says what is wrong with the record
            return [mapped(partial(circle.classify_comment, record, taxonomy, now, owner), record)]
        entries = []
        page = 1
        while True:
            params = {"event_id": record.get("id"), "page": page, "per_page": PER_PAGE}
            attendees, more = _records(http.request("GET", "/event_attendees", params=params).json())
            entries.extend(
                mapped(partial(circle.classify_attendee, record, a, taxonomy, now), {"event": record, "attendee": a})
                for a in attendees
            )
            if not more:
                return entries
            page += 1
