"""Discord's REST API as a poller source: new messages per channel, and who reacted to them.

Reads `GET /channels/{id}/messages?after=<snowflake>&limit=100` with a bot token. Discord returns
the (up to) 100 messages right after `after`, newest first; they are sorted by id as integers here
and the cursor moves to the largest id once all of them are stored.

Reactions have a stream of their own per channel (`reactions:<id>`), because a reaction usually
comes after the poller has read its message: each run re-lists the messages of the last
`DISCORD_REACTION_LOOKBACK_HOURS` (default 24) and, for every message whose total reaction count
changed since the last run, reads who reacted from `GET /channels/{id}/messages/{id}/reactions/{emoji}`
(pages of 100 users, `after` the last user id). Each (message, emoji, member) counts once. Missed:
reactions on messages older than the lookback, a removal and an addition between two runs that leave
the count unchanged, and super reactions (`type=1`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import quote

from engagement.adapters.polling import Entry, HttpFetcher, Page, mapped
from engagement.domain import discord_messages as discord
from engagement.domain.activity import PayloadShapeError
from engagement.domain.taxonomy import Taxonomy

DEFAULT_BASE_URL = "https://discord.com/api/v10"
PAGE_SIZE = 100
# Reaction counts remembered per channel (message id -> total), newest kept: bounds the cursor item's size.
MAX_TRACKED_MESSAGES = 5_000
# Discord asks bots to identify themselves this way (its API reference, "User Agent").
USER_AGENT = "DiscordBot (https://github.com/community-engagement/engagement, 0.1)"


class DiscordSource:
    platform = discord.PLATFORM

    def __init__(self, token: str | None, channel_ids: list[str], reaction_lookback: timedelta | None = None) -> None:
        """`reaction_lookback`: how far back reactions are re-read each run; None reads from the stream's start
        (a backfill)."""
        self.token = token
        self.channel_ids = channel_ids
        self.reaction_lookback = reaction_lookback

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bot {self.token}", "User-Agent": USER_AGENT}

    def not_configured(self) -> str | None:
        if not self.token:
            return "no Discord bot token is configured (DISCORD_BOT_TOKEN)"
        if not self.channel_ids:
            return "no Discord channels are configured (DISCORD_CHANNEL_IDS)"
        return None

    def streams(self) -> list[str]:
        return [f"channel:{c}" for c in self.channel_ids] + [f"reactions:{c}" for c in self.channel_ids]

    def start(self, stream: str, since: datetime) -> dict[str, Any]:
        if stream.startswith("reactions:"):
            return {"floor": str(discord.snowflake_at(since)), "after": None, "counts": {}}
        return {"after": str(discord.snowflake_at(since))}

    def _messages(self, http: HttpFetcher, channel: str, after: int) -> list[dict[str, Any]]:
        params = {"after": str(after), "limit": PAGE_SIZE}
        messages = http.request("GET", f"/channels/{channel}/messages", params=params).json()
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise PayloadShapeError("Discord returned something other than a list of messages")
        messages.sort(key=lambda m: discord.snowflake(m.get("id")))
        for message in messages:
            message.setdefault("channel_id", channel)
        return messages

    def fetch(self, stream: str, state: dict[str, Any], http: HttpFetcher, taxonomy: Taxonomy, now: datetime) -> Page:
        kind, channel = stream.split(":", 1)
        if kind == "reactions":
            return self._reactions(channel, state, http, taxonomy, now)
        after = discord.snowflake(state.get("after", 0))
        messages = self._messages(http, channel, after)
        entries = [mapped(partial(discord.classify_message, m, taxonomy, now), m) for m in messages]
        newest = max((discord.snowflake(m["id"]) for m in messages), default=after)
        return Page(entries, {"after": str(max(newest, after))}, more=len(messages) >= PAGE_SIZE)

    def _reactions(
        self, channel: str, state: dict[str, Any], http: HttpFetcher, taxonomy: Taxonomy, now: datetime
    ) -> Page:
        """One page of the reaction pass: messages after the pass position whose reaction count changed."""
        floor = discord.snowflake(state.get("floor", 0))
        if self.reaction_lookback is not None:
            floor = max(floor, discord.snowflake_at(now - self.reaction_lookback))
        after = discord.snowflake(state["after"]) if state.get("after") else floor
        counts = {k: v for k, v in (state.get("counts") or {}).items() if discord.snowflake(k) >= floor}
        messages = self._messages(http, channel, after)
        entries: list[Entry] = []
        for message in messages:
            reactions = [r for r in message.get("reactions") or [] if isinstance(r, dict)]
            total = sum(int(r.get("count") or 0) for r in reactions)
            if total and counts.get(message["id"]) != total:
                for reaction in reactions:
                    try:
                        emoji = discord.emoji_key(reaction.get("emoji") or {})
                    except PayloadShapeError:
                        continue  # an emoji with neither id nor name cannot be asked about
                    for user in self._reactors(http, channel, message["id"], emoji):
                        raw = {"channel_id": channel, "message_id": message["id"], "emoji": emoji, "user": user}
                        entries.append(
                            mapped(partial(discord.classify_reaction, message, emoji, user, taxonomy, now), raw)
                        )
            if total:
                counts[message["id"]] = total
            else:
                counts.pop(message["id"], None)
        if len(counts) > MAX_TRACKED_MESSAGES:
            keep = sorted(counts, key=discord.snowflake)[-MAX_TRACKED_MESSAGES:]
            counts = {k: counts[k] for k in keep}
        more = len(messages) >= PAGE_SIZE
        newest = max((discord.snowflake(m["id"]) for m in messages), default=after)
        # A finished pass starts again at the window's start next run; an unfinished one continues after its page.
        cursor = {"floor": str(floor), "after": str(newest) if more else None, "counts": counts}
        return Page(entries, cursor, more=more)

    def _reactors(self, http: HttpFetcher, channel: str, message_id: str, emoji: str) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = []
        after: str | None = None
        path = f"/channels/{channel}/messages/{message_id}/reactions/{quote(emoji, safe=':')}"
        while True:
            params = {"limit": PAGE_SIZE, **({"after": after} if after else {})}
            batch = http.request("GET", path, params=params).json()
            if not isinstance(batch, list):
                raise PayloadShapeError("Discord returned something other than a list of users")
            users.extend(u for u in batch if isinstance(u, dict))
            if len(batch) < PAGE_SIZE:
                return users
            after = str(max(discord.snowflake(u.get("id")) for u in batch))
