"""Slack's `users.info` Web API method: a member's email, cached and rate-limit aware.

The Events API names users by id only. With a bot token (scopes `users:read` and
`users:read.email`), `GET https://slack.com/api/users.info?user=<id>` answers
`{"ok": true, "user": {"id": ..., "profile": {"email": ...}}}`. The lookup happens inside a
webhook Slack wants answered within 3 seconds, so it never waits: a 429 is remembered until its
`Retry-After` passes (lookups until then answer None at once), and the event is stored without an
email; the account learns its email on a later event (`Store.resolve` links it then).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from engagement.domain.activity import normalize_email

SLACK_API = "https://slack.com/api"
TIMEOUT_SECONDS = 1.5
FOUND_TTL_SECONDS = 6 * 3600
# A user without a visible email (or an error such as user_not_found) is asked again after this.
MISSING_TTL_SECONDS = 600
DEFAULT_RETRY_AFTER_SECONDS = 30
MAX_CACHE_ENTRIES = 10_000


class SlackDirectory:
    """Emails of Slack users by id, from `users.info`, cached per warm function instance."""

    def __init__(
        self,
        token: str,
        client: httpx.Client | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        base_url: str = SLACK_API,
    ) -> None:
        self._token = token
        self._client = client or httpx.Client(timeout=TIMEOUT_SECONDS)
        self._monotonic = monotonic
        self._base_url = base_url.rstrip("/")
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._blocked_until = 0.0
        self.calls = 0

    def email_of(self, user_id: str) -> str | None:
        """The user's email, or None (no email, no permission, rate-limited or Slack unreachable)."""
        now = self._monotonic()
        cached = self._cache.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        if now < self._blocked_until:
            return None
        self.calls += 1
        try:
            response = self._client.get(
                f"{self._base_url}/users.info",
                params={"user": user_id},
                headers={"Authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError:
            return None  # not cached: Slack being unreachable says nothing about the user
        if response.status_code == 429:
            self._blocked_until = now + _retry_after(response)
            return None
        if response.status_code >= 500:
            return None
        email = _email(response)
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            self._cache.clear()
        self._cache[user_id] = (email, now + (FOUND_TTL_SECONDS if email else MISSING_TTL_SECONDS))
        return email


def _retry_after(response: httpx.Response) -> float:
    raw = response.headers.get("Retry-After", "")
    return float(raw) if raw.strip().isdigit() else DEFAULT_RETRY_AFTER_SECONDS


def _email(response: httpx.Response) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("ok") is not True:
        return None
    user = body.get("user") or {}
    if user.get("is_bot") or user.get("deleted"):
        return None
    return normalize_email((user.get("profile") or {}).get("email"))
