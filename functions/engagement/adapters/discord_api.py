"""Discord's REST API as a poller source: new messages per channel, and who reacted to them.

Reads `GET /channels/{id}/messages?after=<snowflake>&limit=100` with a bot token. Discord returns
the (up to) 100 messages right after `after`, newest first; they are sorted by id as integers here
and the cursor moves to the largest id once all of them are stored.

Reactions: the message object carries only counts, so for each message with reactions the users are
read from `GET /channels/{id}/messages/{id}/reactions/{emoji}` (pages of 100 users, `after` the last
user id). Reactions are read when the poller first reads the message; a reaction added after that is
not seen (the gateway's MESSAGE_REACTION_ADD would be needed; see docs/pollers.md). Super reactions
(`type=1`) are not read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from engagement.adapters.polling import Entry, HttpFetcher, Page
from engagement.domain import discord
from engagement.domain.activity import PayloadShapeError
from engagement.domain.taxonomy import Taxonomy

DEFAULT_BASE_URL = "https://discord.com/api/v10"
PAGE_SIZE = 100
# Discord asks bots to identify themselves this way (its API reference, "User Agent").
USER_AGENT = "DiscordBot (https://github.com/community-engagement/engagement, 0.1)"


class DiscordSource:
    platform = discord.PLATFORM

    def __init__(self, token: str | None, channel_ids: list[str]) -> None:
        self.token = token
        self.channel_ids = channel_ids

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bot {self.token}", "User-Agent": USER_AGENT}

    def not_configured(self) -> str | None:
        if not self.token:
            return "no Discord bot token is configured (DISCORD_BOT_TOKEN)"
        if not self.channel_ids:
            return "no Discord channels are configured (DISCORD_CHANNEL_IDS)"
        return None

    def streams(self) -> list[str]:
        return [f"channel:{channel}" for channel in self.channel_ids]

    def start(self, stream: str, since: datetime) -> dict[str, Any]:
        return {"after": str(discord.snowflake_at(since))}

    def fetch(self, stream: str, state: dict[str, Any], http: HttpFetcher, taxonomy: Taxonomy, now: datetime) -> Page:
        channel = stream.split(":", 1)[1]
        after = discord.snowflake(state.get("after", 0))
        response = http.request(
            "GET", f"/channels/{channel}/messages", params={"after": str(after), "limit": PAGE_SIZE}
        )
        messages = response.json()
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise PayloadShapeError("Discord returned something other than a list of messages")
        messages.sort(key=lambda m: discord.snowflake(m.get("id")))
        entries: list[Entry] = []
        for message in messages:
            message.setdefault("channel_id", channel)
            entries.append(Entry(discord.classify_message(message, taxonomy, now), message))
            for reaction in message.get("reactions") or []:
                emoji = discord.emoji_key(reaction.get("emoji") or {})
                for user in self._reactors(http, channel, message["id"], emoji):
                    raw = {"channel_id": channel, "message_id": message["id"], "emoji": emoji, "user": user}
                    entries.append(Entry(discord.classify_reaction(message, emoji, user, taxonomy, now), raw))
        newest = max((discord.snowflake(m["id"]) for m in messages), default=after)
        return Page(entries, {"after": str(max(newest, after))}, more=len(messages) >= PAGE_SIZE)

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
