"""Discord deliveries to our endpoint: interactions and Webhook Events, neither of which scores.

Discord sends two kinds of signed request to an app's URLs, told apart by their shape:
- Webhook Events (`{"version": 1, "application_id": ..., "type": 0 | 1, "event": {...}}`): type 0
  is the PING (answered 204, empty); type 1 carries an `event` such as APPLICATION_AUTHORIZED.
- Interactions (slash commands, buttons, ...: `{"type": 1..5, "token": ..., ...}`): type 1 is the
  PING, answered `{"type": 1}` (PONG).

What they map to (docs/mapping.md): no action. Community activity on Discord is messages and
reactions, which Discord delivers only over its gateway; a poller reads those (issue 3, another
module). An interaction or an APPLICATION_AUTHORIZED event still tells us a Discord account
exists, so the account is noted (a Lurker until it acts) and the delivery is answered as ignored.

Timestamps: Discord's `event.timestamp` has no UTC offset ("2024-10-18T14:42:53.064834"); such
naive times are read as UTC, the documented rule for every Discord time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engagement.domain.activity import Account, Ignored, identifier, parse_timestamp

PLATFORM = "discord"

WEBHOOK_PING = "webhook_ping"
WEBHOOK_EVENT = "webhook_event"
INTERACTION_PING = "interaction_ping"
INTERACTION = "interaction"

INTERACTION_TYPES = {
    1: "ping",
    2: "application_command",
    3: "message_component",
    4: "application_command_autocomplete",
    5: "modal_submit",
}
# Interaction callback types (Discord's numbering).
PONG = 1
CHANNEL_MESSAGE = 4
AUTOCOMPLETE_RESULT = 8
EPHEMERAL = 1 << 6


def kind(payload: dict[str, Any]) -> str:
    """Which of Discord's request kinds a body is (see the module docstring)."""
    if "event" in payload and "token" not in payload:
        return WEBHOOK_EVENT
    if payload.get("type") == 0 and "token" not in payload:
        return WEBHOOK_PING
    if payload.get("type") == 1:
        return INTERACTION_PING
    return INTERACTION


def event_time(raw: Any, received_at: datetime) -> datetime:
    """A Discord timestamp as aware UTC; a naive one is UTC (Discord's webhook events omit the offset)."""
    return parse_timestamp(raw, received_at)


def classify(payload: dict[str, Any], received_at: datetime) -> Ignored:
    """Say why a Discord interaction or webhook event scores nothing, noting any person's account in it."""
    if kind(payload) == WEBHOOK_EVENT:
        event = payload.get("event") or {}
        event_type = event.get("type")
        data = event.get("data") or {}
        if event_type == "APPLICATION_AUTHORIZED":
            account = _account(data.get("user"))
            when = event_time(event.get("timestamp"), received_at).isoformat()
            noted = "; the account was noted" if account else ""
            return Ignored(
                "identity" if account else "no_mapping",
                f"APPLICATION_AUTHORIZED at {when} is not community activity{noted}",
                account=account,
            )
        return Ignored("no_mapping", f"Discord webhook event {event_type!r} is not community activity")

    name = INTERACTION_TYPES.get(payload.get("type"), "unknown")  # type: ignore[arg-type]
    member = payload.get("member") or {}
    user = member.get("user") or payload.get("user")
    if isinstance(user, dict) and (user.get("bot") or user.get("system")):
        return Ignored("bot", "interactions from bots never score")
    return Ignored(
        "identity" if _account(user) else "no_mapping",
        f"Discord {name} interactions are not community activity (messages arrive by the poller)",
        account=_account(user),
    )


def _account(user: Any) -> Account | None:
    if not isinstance(user, dict) or user.get("id") is None or user.get("bot") or user.get("system"):
        return None
    handle = user.get("username") if isinstance(user.get("username"), str) else None
    name = user.get("global_name") if isinstance(user.get("global_name"), str) else None
    return Account(PLATFORM, identifier(user.get("id"), "user.id"), handle=handle, display_name=name)


def interaction_reply(payload: dict[str, Any]) -> dict[str, Any]:
    """The interaction response Discord requires within 3 seconds, so the user never sees "failed"."""
    if payload.get("type") == 4:
        return {"type": AUTOCOMPLETE_RESULT, "data": {"choices": []}}
    return {
        "type": CHANNEL_MESSAGE,
        "data": {"content": "Thanks! This app records community activity; it has no commands.", "flags": EPHEMERAL},
    }
