"""What every scheduled poller function does: build its source, run it within budget, report.

Configuration (environment; secrets as the plain value locally or `<NAME>_ARN` when deployed):

| variable | meaning |
|---|---|
| `DISCORD_BOT_TOKEN` / `_ARN`, `DISCORD_CHANNEL_IDS` | bot token; comma-separated channel ids to read |
| `CIRCLE_API_TOKEN` / `_ARN` | Circle Admin API v2 token |
| `MEETUP_TOKEN` / `_ARN`, `MEETUP_GROUP_URLNAMES` | OAuth access token; comma-separated group urlnames |
| `DISCORD_API_BASE_URL`, `CIRCLE_API_BASE_URL`, `MEETUP_API_URL` | API hosts (defaults: the vendors') |
| `DISCORD_REACTION_LOOKBACK_HOURS` | how far back each run re-reads reactions (default 24) |
| `POLL_MAX_PAGES` | pages per run and stream set (default 50) |
| `POLL_INITIAL_LOOKBACK_HOURS` | where a stream with no cursor starts (default 24 hours back) |
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from aws_lambda_powertools.metrics import MetricUnit

from engagement.adapters.circle_api import DEFAULT_BASE_URL as CIRCLE_BASE_URL
from engagement.adapters.circle_api import CircleSource
from engagement.adapters.cursors import CursorStore
from engagement.adapters.discord_api import DEFAULT_BASE_URL as DISCORD_BASE_URL
from engagement.adapters.discord_api import DiscordSource
from engagement.adapters.meetup_api import DEFAULT_URL as MEETUP_URL
from engagement.adapters.meetup_api import MeetupSource, rate_limit_wait
from engagement.adapters.polling import DEFAULT_MAX_PAGES, Budget, HttpFetcher, Poller, PollSummary, Source
from engagement.handlers.ingest import Dependencies, set_platform_dimension
from engagement.observability import logger, metrics
from engagement.poller_settings import (
    CIRCLE_API_BASE_URL,
    CIRCLE_API_TOKEN,
    DEFAULT_LOOKBACK_HOURS,
    DISCORD_API_BASE_URL,
    DISCORD_BOT_TOKEN,
    DISCORD_CHANNEL_IDS,
    DISCORD_REACTION_LOOKBACK_HOURS,
    MEETUP_API_URL,
    MEETUP_GROUP_URLNAMES,
    MEETUP_TOKEN,
    PLATFORMS,
    POLL_INITIAL_LOOKBACK_HOURS,
    POLL_MAX_PAGES,
)

HTTP_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class PollError(RuntimeError):
    """A stream failed; raised after every stream had its turn, so the function's Errors alarm fires."""


def _list(env: dict[str, str], name: str) -> list[str]:
    return [part.strip() for part in env.get(name, "").split(",") if part.strip()]


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = default
    return value if value > 0 else default


def build_source(
    platform: str, deps: Dependencies, env: dict[str, str], backfill: bool = False
) -> tuple[Source, str, Any]:
    """The source, the base URL of its API and its rate-limit hook for non-429 limits."""
    if platform == "discord":
        lookback = None if backfill else timedelta(hours=_int(env, DISCORD_REACTION_LOOKBACK_HOURS, 24))
        source: Source = DiscordSource(deps.secret(DISCORD_BOT_TOKEN), _list(env, DISCORD_CHANNEL_IDS), lookback)
        return source, env.get(DISCORD_API_BASE_URL, DISCORD_BASE_URL), None
    if platform == "circle":
        return (
            CircleSource(deps.secret(CIRCLE_API_TOKEN), deps.store.topic_owner),
            env.get(CIRCLE_API_BASE_URL, CIRCLE_BASE_URL),
            None,
        )
    if platform == "meetup":
        url = env.get(MEETUP_API_URL, MEETUP_URL)
        return MeetupSource(deps.secret(MEETUP_TOKEN), _list(env, MEETUP_GROUP_URLNAMES), url), url, rate_limit_wait
    raise ValueError(f"unknown poller platform {platform!r}; choose one of {', '.join(PLATFORMS)}")


def build_poller(
    platform: str,
    deps: Dependencies,
    budget: Budget,
    *,
    env: dict[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    start_at: datetime | None = None,
    cursor_prefix: str = "",
) -> tuple[Poller, httpx.Client]:
    """A poller for `platform` on `deps`' tables; close the returned client when done."""
    env = dict(os.environ) if env is None else env
    source, base_url, retryable = build_source(platform, deps, env, backfill=bool(cursor_prefix))
    headers = source.headers() if source.not_configured() is None else {}
    client = httpx.Client(base_url=base_url, headers=headers, timeout=HTTP_TIMEOUT, transport=transport)
    lookback = timedelta(hours=_int(env, POLL_INITIAL_LOOKBACK_HOURS, DEFAULT_LOOKBACK_HOURS))
    poller = Poller(
        source,
        store=deps.store,
        cursors=CursorStore(deps.settings, deps.store.client),
        http=HttpFetcher(client, budget, sleep=sleep, retryable=retryable),
        taxonomy=deps.taxonomy(),
        clock=deps.clock,
        start_at=start_at or deps.clock() - lookback,
        cursor_prefix=cursor_prefix,
    )
    return poller, client


def run_scheduled(
    platform: str,
    event: dict[str, Any],
    context: Any,
    deps: Dependencies,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One scheduled run: every stream from its cursor, within the page budget and the Lambda deadline.

    Raises:
        PollError: a stream failed (its cursor stays where it was; the next run retries it).
    """
    set_platform_dimension(platform)
    env = dict(os.environ)
    budget = Budget.from_context(context, _int(env, POLL_MAX_PAGES, DEFAULT_MAX_PAGES))
    poller, client = build_poller(platform, deps, budget, env=env, transport=transport, sleep=sleep)
    with client:
        summary: PollSummary = poller.run()
    result = summary.as_dict()
    logger.info("poll finished", extra={**result, "scheduled_time": (event or {}).get("time")})
    if summary.status == "not_configured":
        logger.warning("poller not configured", extra={"reason": summary.reason})
        return result
    metrics.add_metric(name="PollPages", unit=MetricUnit.Count, value=sum(s.pages for s in summary.streams))
    metrics.add_metric(name="ActivitiesStored", unit=MetricUnit.Count, value=sum(s.stored for s in summary.streams))
    failed = [s for s in summary.streams if s.status == "failed"]
    if failed:
        metrics.add_metric(name="PollFailures", unit=MetricUnit.Count, value=len(failed))
        raise PollError("; ".join(f"{s.stream}: {s.error}" for s in failed))
    return result
