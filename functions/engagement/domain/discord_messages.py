"""Discord messages and reactions, as the REST API returns them, to activities (the poller's half; the signed
interactions endpoint is `engagement.domain.discord`).

Discord delivers message activity only over its gateway (a long-lived websocket), which a Lambda
function cannot hold; the poller reads `GET /channels/{id}/messages` instead and hands each message
object here. Rules:

- A message whose `message_reference` points at a message by another (non-bot) member is an answer
  (`message.reply.others`); a reply to oneself, to a bot or to a message Discord no longer returns
  is participation; any other default message is participation (`message.post`).
- Reactions: the message object carries only counts, so the poller reads who reacted through
  `GET /channels/{id}/messages/{id}/reactions/{emoji}`; each (message, emoji, user) counts once,
  a reaction on one's own message not at all. A reaction has no timestamp in the REST API: it is
  dated when the poller read it.
- Bots never score: `author.bot`, `author.system`, webhook messages (`webhook_id`), the ids listed
  under `bots.discord`, and system message types (joins, pins, boosts, thread notices, slash
  command invocations).
- Timestamps: ISO 8601 as Discord sends them; a value without an offset is read as UTC.
- Snowflakes (ids) are compared as integers, never as strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engagement.domain.activity import Account, Activity, Ignored, PayloadShapeError, identifier, parse_timestamp
from engagement.domain.taxonomy import Taxonomy

PLATFORM = "discord"
DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT = 0
REPLY = 19
SCORED_TYPES = frozenset({DEFAULT, REPLY})


def snowflake(value: Any) -> int:
    """A snowflake id as an integer.

    Raises:
        PayloadShapeError: the value is not a non-negative integer in a string or a number.
    """
    if isinstance(value, bool):
        raise PayloadShapeError("a snowflake must be an integer string")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise PayloadShapeError(f"{value!r} is not a snowflake") from None
    if number < 0:
        raise PayloadShapeError(f"{value!r} is not a snowflake")
    return number


def snowflake_at(moment: datetime) -> int:
    """The smallest snowflake Discord could mint at `moment` (the `after` bound for a date)."""
    millis = int(moment.astimezone(UTC).timestamp() * 1000) - DISCORD_EPOCH_MS
    return max(0, millis) << 22


def snowflake_time(value: Any) -> datetime:
    """When a snowflake was minted (its top 42 bits are milliseconds since Discord's epoch)."""
    return datetime.fromtimestamp(((snowflake(value) >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


def _account(user: dict[str, Any]) -> Account:
    return Account(
        platform=PLATFORM,
        user_id=identifier(user.get("id"), "the author id"),
        handle=user.get("username") if isinstance(user.get("username"), str) else None,
        display_name=user.get("global_name") if isinstance(user.get("global_name"), str) else None,
    )


def bot_reason(user: Any, taxonomy: Taxonomy) -> str | None:
    """Why a user never scores, or None for a person."""
    if not isinstance(user, dict):
        return "the message has no author"
    if user.get("bot") is True:
        return f"{user.get('username')} is a bot"
    if user.get("system") is True:
        return "a Discord system user"
    if str(user.get("id")) in taxonomy.bot_names(PLATFORM) or str(user.get("username", "")).lower() in (
        taxonomy.bot_names(PLATFORM)
    ):
        return f"{user.get('username')} is listed under bots.discord"
    return None


def _mapped(taxonomy: Taxonomy, signal: str) -> str | None:
    return taxonomy.mapping.get(PLATFORM, {}).get(signal)


def classify_message(message: dict[str, Any], taxonomy: Taxonomy, read_at: datetime) -> Activity | Ignored:
    """Map one message object (REST or gateway `MESSAGE_CREATE` `d`) to an activity or a reason.

    Args:
        message: the message object.
        taxonomy: supplies the mapping and bots.discord.
        read_at: when the poller read it; the upper bound for its timestamp.

    Raises:
        PayloadShapeError: the message has no usable id, channel id or author id.
    """
    if not isinstance(message, dict):
        raise PayloadShapeError("a message must be a JSON object")
    message_id = snowflake(message.get("id"))
    channel_id = identifier(message.get("channel_id"), "the channel id")
    author = message.get("author")
    if message.get("webhook_id"):
        return Ignored("bot", "a webhook message, not a member")
    reason = bot_reason(author, taxonomy)
    if reason:
        return Ignored("bot", reason)
    kind = message.get("type", DEFAULT)
    if kind not in SCORED_TYPES:
        return Ignored("system_message", f"message type {kind} is a system notice, not a member's message")

    account = _account(author)
    signal = "message.post"
    reference = message.get("message_reference")
    if kind == REPLY or (isinstance(reference, dict) and reference.get("message_id")):
        parent = message.get("referenced_message")
        parent_author = parent.get("author") if isinstance(parent, dict) else None
        if not isinstance(parent_author, dict):
            signal = "message.reply.unknown"
        elif bot_reason(parent_author, taxonomy) or parent.get("webhook_id"):
            signal = "message.reply.bot"
        elif str(parent_author.get("id")) == account.user_id:
            signal = "message.reply.own"
        else:
            signal = "message.reply.others"
    action = _mapped(taxonomy, signal)
    if action is None:
        return Ignored("unmapped", f"discord signal {signal} maps to no action")
    return Activity(
        event_id=f"{PLATFORM}:message:{message_id}",
        platform=PLATFORM,
        signal=signal,
        action=action,
        account=account,
        occurred_at=parse_timestamp(message.get("timestamp"), read_at),
        metadata={
            "channel_id": channel_id,
            "guild_id": message.get("guild_id"),
            "message_id": str(message_id),
            "reply_to": (reference or {}).get("message_id") if isinstance(reference, dict) else None,
        },
    )


def emoji_key(emoji: dict[str, Any]) -> str:
    """The emoji as the reactions endpoint takes it: `name:id` for a custom emoji, the character otherwise."""
    name, emoji_id = emoji.get("name"), emoji.get("id")
    if emoji_id:
        return f"{name}:{emoji_id}"
    if not isinstance(name, str) or not name:
        raise PayloadShapeError("a reaction emoji has neither an id nor a name")
    return name


def classify_reaction(
    message: dict[str, Any], emoji: str, user: dict[str, Any], taxonomy: Taxonomy, read_at: datetime
) -> Activity | Ignored:
    """One user's reaction with `emoji` on `message` (a user object from the reactions endpoint)."""
    message_id = snowflake(message.get("id"))
    reason = bot_reason(user, taxonomy)
    if reason:
        return Ignored("bot", reason)
    account = _account(user)
    author = message.get("author") if isinstance(message.get("author"), dict) else {}
    signal = "message.reaction.own" if str(author.get("id")) == account.user_id else "message.reaction.others"
    action = _mapped(taxonomy, signal)
    if action is None:
        return Ignored("unmapped", f"discord signal {signal} maps to no action")
    return Activity(
        event_id=f"{PLATFORM}:reaction:{message_id}:{emoji}:{account.user_id}",
        platform=PLATFORM,
        signal=signal,
        action=action,
        account=account,
        occurred_at=read_at,
        metadata={"channel_id": str(message.get("channel_id")), "message_id": str(message_id), "emoji": emoji},
    )
