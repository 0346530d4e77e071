"""`engagement invoke` runs sample events signed long ago: give signature windows the time the request arrived.

Slack, Discord and POST /events refuse a request signed more than five minutes before "now". A
sample event in `events/` keeps the moment API Gateway received it (`requestTimeEpoch`, REST v1;
`timeEpoch`, HTTP API v2), so locally the handler's clock is pinned there: the sample verifies and
scores exactly as it did when it was recorded. Deployed functions always use the real clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def received_at(event: dict[str, Any]) -> datetime | None:
    context = event.get("requestContext") or {}
    epoch_ms = context.get("requestTimeEpoch") or context.get("timeEpoch")
    return datetime.fromtimestamp(epoch_ms / 1000, UTC) if isinstance(epoch_ms, int | float) else None


def pin_clock(module: Any, event: dict[str, Any]) -> None:
    """Give a webhook handler module dependencies whose clock reads the event's receipt time."""
    moment = received_at(event)
    if moment is None or not hasattr(module, "PLATFORM"):  # webhook handlers only
        return
    from engagement.handlers import ingest

    deps = ingest.default_dependencies()
    deps.clock = lambda: moment
    module._deps = deps
