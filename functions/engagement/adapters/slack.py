"""Tier-entry alerts to a Slack incoming webhook.

Slack answers `200 ok`; a refused message gets a 4xx with a short reason in plain text
(`invalid_payload`, `no_service`, `channel_not_found`, `channel_is_archived`, `action_prohibited`);
a 429 carries `Retry-After`. Refusals are final; 429, 5xx and network errors are retried briefly here
and then reported so the stream record is retried.
"""

from __future__ import annotations

from typing import Any

import httpx
import stamina

from engagement.adapters.hubspot import TransientError, _backoff, _retry_after
from engagement.domain.crm import MemberChange


class AlertRejected(Exception):
    """Slack refused the message (4xx other than 429): sending it again will not help."""


def alert_message(change: MemberChange) -> dict[str, Any]:
    """The Slack message for a tier entry: who, which tier, and the actions that earned it."""
    came_from = f" (from {change.previous_tier})" if change.previous_tier and change.previous_tier != "none" else ""
    headline = f"{change.name} <{change.email}> is now a *{change.tier}*{came_from}, score {change.score:.1f}."
    earned = "\n".join(f"• {reason}" for reason in change.reasons) or "• (no scored actions in the last 90 days)"
    text = f"{headline}\nActions that earned it:\n{earned}"
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


class SlackAlerts:
    name = "slack"

    def __init__(self, url: str, client: httpx.Client | None = None, attempts: int = 3) -> None:
        self.url = url
        self.client = client or httpx.Client(timeout=httpx.Timeout(5.0, connect=3.0))
        self.attempts = attempts
        self.calls = 0

    def send(self, change: MemberChange) -> None:
        for attempt in stamina.retry_context(on=_backoff, attempts=self.attempts, timeout=20.0, wait_max=5.0):
            with attempt:
                self.calls += 1
                response = self.client.post(self.url, json=alert_message(change))
                if response.status_code == 429 or response.status_code >= 500:
                    raise TransientError(
                        f"Slack answered {response.status_code}: {response.text[:100]}", _retry_after(response)
                    )
                if response.status_code >= 400:
                    raise AlertRejected(f"Slack answered {response.status_code}: {response.text[:100]}")
                return
