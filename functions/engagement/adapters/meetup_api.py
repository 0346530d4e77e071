"""Meetup's GraphQL API (`POST https://api.meetup.com/gql-ext`) as a poller source.

One stream per group (`group:<urlname>`). The cursor is the start time of the newest past event
whose RSVPs are all stored, plus the ids of the events at exactly that time (two events may start
together). Each page is one event: the group's past events after the cursor are listed (20 at a
time, oldest first), then every RSVP page of the next event is read and mapped, then the cursor
moves past it.

Meetup's limit is a budget of points per 60-second window; a request over it is answered with a
GraphQL error rather than a 429, so such an error is waited out like a 429 (60 s unless the error
says when the window resets). Any other GraphQL error fails the run without moving the cursor.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx

from engagement.adapters.polling import Entry, HttpFetcher, Page, PollFailed, mapped
from engagement.domain import meetup
from engagement.domain.activity import PayloadShapeError, parse_timestamp
from engagement.domain.taxonomy import Taxonomy

DEFAULT_URL = "https://api.meetup.com/gql-ext"
EVENTS_PER_LISTING = 20
RSVPS_PER_PAGE = 100
RATE_WINDOW_SECONDS = 60.0

PAST_EVENTS = """
query pastEvents($urlname: String!, $after: DateTime, $first: Int) {
  groupByUrlname(urlname: $urlname) {
    id
    events(first: $first, filter: {status: [PAST], afterDateTime: $after}) {
      pageInfo { hasNextPage endCursor }
      edges { node { id title eventUrl dateTime duration status eventType venues { id name venueType } } }
    }
  }
}
"""

EVENT_RSVPS = """
query eventRsvps($id: ID!, $cursor: String, $first: Int) {
  event(id: $id) {
    id
    rsvps(after: $cursor, first: $first) {
      pageInfo { hasNextPage endCursor }
      edges { node { id status guestsCount member { id name } } }
    }
  }
}
"""


def rate_limit_wait(response: httpx.Response) -> float | None:
    """A wait when a 200 answer carries Meetup's rate-limit error, else None."""
    try:
        body = response.json()
    except ValueError:
        return None
    errors = body.get("errors") if isinstance(body, dict) else None
    for error in errors or []:
        if not isinstance(error, dict):
            continue
        code = str((error.get("extensions") or {}).get("code") or "")
        if "rate" in str(error.get("message", "")).lower() or code.upper() == "RATE_LIMITED":
            reset = (error.get("extensions") or {}).get("resetAt")
            if isinstance(reset, str):
                try:
                    moment = datetime.fromisoformat(reset.replace("Z", "+00:00"))
                except ValueError:
                    return RATE_WINDOW_SECONDS
                moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
                return min(RATE_WINDOW_SECONDS, max(0.0, (moment - datetime.now(UTC)).total_seconds()))
            return RATE_WINDOW_SECONDS
    return None


def _data(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict):
        raise PayloadShapeError("Meetup answered something other than a GraphQL response")
    if body.get("errors"):
        raise PollFailed(f"Meetup GraphQL errors: {str(body['errors'])[:300]}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise PayloadShapeError("Meetup's GraphQL response has no data")
    return data


class MeetupSource:
    platform = meetup.PLATFORM

    def __init__(self, token: str | None, groups: list[str], url: str = DEFAULT_URL) -> None:
        self.token = token
        self.groups = groups
        self.url = url
        self._listed: dict[str, tuple[str, list[dict[str, Any]], bool]] = {}

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def not_configured(self) -> str | None:
        if not self.token:
            return "no Meetup token is configured (MEETUP_TOKEN)"
        if not self.groups:
            return "no Meetup groups are configured (MEETUP_GROUP_URLNAMES)"
        return None

    def streams(self) -> list[str]:
        return [f"group:{group}" for group in self.groups]

    def start(self, stream: str, since: datetime) -> dict[str, Any]:
        return {"after": since.isoformat(), "done": []}

    def _post(self, http: HttpFetcher, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return _data(http.request("POST", self.url, json={"query": query, "variables": variables}))

    def _pending(self, stream: str, state: dict[str, Any], http: HttpFetcher, now: datetime) -> tuple[list, bool]:
        """Past events after the cursor not yet done, oldest first, and whether the listing had more."""
        after = parse_timestamp(state.get("after"), now)
        done = set(state.get("done") or [])
        key = f"{state.get('after')}|{sorted(done)}"
        cached = self._listed.get(stream)
        if cached is None or cached[0] != key:
            # A second early, so an event starting exactly at the cursor is listed even if the filter is exclusive.
            variables = {
                "urlname": stream.split(":", 1)[1],
                "after": (after - timedelta(seconds=1)).isoformat(),
                "first": EVENTS_PER_LISTING,
            }
            group = self._post(http, PAST_EVENTS, variables).get("groupByUrlname")
            if not isinstance(group, dict):
                raise PollFailed(f"Meetup knows no group {variables['urlname']!r}")
            connection = group.get("events") or {}
            nodes = [e.get("node") for e in connection.get("edges") or [] if isinstance(e, dict)]
            events = [n for n in nodes if isinstance(n, dict) and n.get("id")]
            listed = [parse_timestamp(e.get("dateTime"), now) for e in events]
            has_more = bool((connection.get("pageInfo") or {}).get("hasNextPage"))
            if has_more and listed != sorted(listed):
                # Only an oldest-first listing can be consumed a page at a time: with newest first, moving the cursor
                # past this page would skip the older events on the next one.
                raise PollFailed("Meetup listed past events out of date order; refusing to move past them")
            events = [e for e in events if parse_timestamp(e.get("dateTime"), now) >= after and e["id"] not in done]
            events.sort(key=lambda e: (parse_timestamp(e.get("dateTime"), now), str(e["id"])))
            cached = (key, events, has_more)
        return cached[1], cached[2]

    def fetch(self, stream: str, state: dict[str, Any], http: HttpFetcher, taxonomy: Taxonomy, now: datetime) -> Page:
        events, listing_has_more = self._pending(stream, state, http, now)
        if not events:
            return Page([], state, more=False)
        event = events[0]
        entries: list[Entry] = []
        cursor: str | None = None
        while True:
            variables = {"id": event["id"], "cursor": cursor, "first": RSVPS_PER_PAGE}
            rsvps = (self._post(http, EVENT_RSVPS, variables).get("event") or {}).get("rsvps") or {}
            for edge in rsvps.get("edges") or []:
                node = edge.get("node") if isinstance(edge, dict) else None
                entries.append(
                    mapped(partial(meetup.classify_rsvp, event, node, taxonomy, now), {"event": event, "rsvp": node})
                )
            page_info = rsvps.get("pageInfo") or {}
            if not page_info.get("hasNextPage"):
                break
            cursor = page_info.get("endCursor")

        moment = parse_timestamp(event.get("dateTime"), now)
        previous = parse_timestamp(state.get("after"), now)
        done = ([*state.get("done", []), event["id"]]) if moment == previous else [event["id"]]
        new_state = {"after": moment.isoformat(), "done": done}
        remaining = events[1:]
        self._listed[stream] = (f"{new_state['after']}|{sorted(set(done))}", remaining, listing_has_more)
        return Page(entries, new_state, more=bool(remaining) or listing_has_more)
