"""Slack Events API deliveries to activities, withdrawals, or reasons to ignore them.

Keys. Slack retries a delivery it got no 2xx for (same `event_id`, with `X-Slack-Retry-Num`), and
has been seen resending one message under a new `event_id`: a message is therefore keyed by
what it is, `slack:<team>:msg:<channel>:<ts>`, and every other event by `slack:<team>:event:<event_id>`.
A `message_replied` notice (about a thread's parent) is ignored: the reply arrives as its own
message event, which is the one that says whether a bot wrote it.

`ts` values ("1664216870.477049") are ids: they are kept as the exact strings Slack sent, in keys
and metadata, and only turned into a time (exactly, without a float) for `occurred_at`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engagement.domain.activity import (
    Account,
    Activity,
    Ignored,
    PayloadShapeError,
    Withdrawal,
    identifier,
    normalize_email,
    parse_timestamp,
)
from engagement.domain.taxonomy import Taxonomy

PLATFORM = "slack"
# Message subtypes a person writes; any other subtype (topic changes, pins, bot messages, ...) is not activity.
PERSON_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "me_message"})
PRIVATE_CHANNEL_TYPES = frozenset({"im", "mpim"})


def ts_moment(ts: Any, fallback: datetime) -> datetime:
    """The moment a Slack `ts` ("seconds.micros", a string) names, exact to the microsecond; `fallback` if bad.

    Clamped to `fallback` (receipt) like every other timestamp, so a clock ahead of ours never inflates a score.
    """
    if not isinstance(ts, str):
        return fallback
    seconds, _, fraction = ts.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()):
        return fallback
    micros = int((fraction + "000000")[:6]) if fraction else 0
    moment = datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=micros)
    return min(moment, fallback)


def message_key(team: str, channel: Any, ts: Any) -> str:
    return f"{PLATFORM}:{team}:msg:{identifier(channel, 'event.channel')}:{identifier(ts, 'the message ts')}"


def is_bot(item: dict[str, Any]) -> bool:
    """Bot traffic by any of Slack's markers, even when a `user` field is present too."""
    return bool(item.get("bot_id") or item.get("bot_profile") or item.get("subtype") == "bot_message")


def classify(payload: dict[str, Any], taxonomy: Taxonomy, received_at: datetime) -> Activity | Ignored | Withdrawal:
    """Map one Events API `event_callback` body to an activity, a withdrawal, or a reason to ignore it.

    Args:
        payload: the decoded body (`url_verification` is answered before this is called).
        taxonomy: supplies the mapping (`mapping.slack`) and the configured bot user ids (`bots.slack`).
        received_at: when we received the delivery; fallback and upper bound for timestamps.

    Raises:
        PayloadShapeError: an `event_callback` without the fields its event type needs.
    """
    kind = payload.get("type")
    if kind != "event_callback":
        return Ignored("unsupported", f"Slack request type {kind!r} carries no community activity")
    event = payload.get("event")
    if not isinstance(event, dict):
        raise PayloadShapeError("an event_callback body has no event object")
    team = identifier(payload.get("team_id") or event.get("team"), "team_id")
    event_type = event.get("type")
    envelope_time = parse_timestamp(payload.get("event_time"), received_at)

    if event_type == "message":
        return _message(team, event, taxonomy, received_at)
    if event_type == "reaction_added":
        return _reaction(team, payload, event, taxonomy, envelope_time)
    if event_type in ("member_joined_channel", "team_join"):
        return _join(team, payload, event, taxonomy, envelope_time)
    if event_type == "reaction_removed":
        return Ignored("no_mapping", "a removed reaction keeps the point its reaction earned")
    return Ignored("no_mapping", f"no mapping for slack event {event_type!r}")


def _message(
    team: str, event: dict[str, Any], taxonomy: Taxonomy, received_at: datetime
) -> Activity | Ignored | Withdrawal:
    subtype = event.get("subtype")
    if subtype == "message_changed":
        return Ignored("no_points", "an edited message earns no more points than it did")
    if subtype == "message_deleted":
        deleted_ts = event.get("deleted_ts") or (event.get("previous_message") or {}).get("ts")
        return Withdrawal(
            event_id=message_key(team, event.get("channel"), deleted_ts),
            platform=PLATFORM,
            signal="message_deleted",
            reason="a deleted message withdraws the points it earned",
            occurred_at=ts_moment(event.get("ts"), received_at),
        )
    if subtype == "message_replied":
        # The notice names a reply only as {user, ts}; the reply's own message event also says whether a bot
        # wrote it, so the reply is credited from that event (same key), never from the notice.
        return Ignored("thread_notice", "message_replied describes the thread; the reply is counted from its own event")
    if is_bot(event):
        return Ignored("bot", "messages from bots and apps never score")
    if event.get("channel_type") in PRIVATE_CHANNEL_TYPES:
        return Ignored("private", "direct messages are not community activity")
    if subtype == "channel_join":
        account = _account(event.get("user"), taxonomy)
        if isinstance(account, Ignored):
            return account
        return Ignored(
            "identity", "channel_join is recorded from member_joined_channel; the account was noted", account=account
        )
    if subtype not in PERSON_SUBTYPES:
        return Ignored("no_mapping", f"message subtype {subtype!r} is not something a member wrote")

    account = _account(event.get("user"), taxonomy)
    if isinstance(account, Ignored):
        return account
    ts, thread_ts = event.get("ts"), event.get("thread_ts")
    key = message_key(team, event.get("channel"), ts)
    meta = {"team": team, "channel": event.get("channel"), "ts": ts, "thread_ts": thread_ts}
    if thread_ts is not None and thread_ts != ts:
        parent = event.get("parent_user_id")
        whose = "unknown_thread" if not parent else ("own" if parent == account.user_id else "others")
        signal = f"message.reply.{whose}"
    else:
        signal = "message.top_level"
    return _activity(signal, key, account, ts_moment(ts, received_at), meta, taxonomy)


def _reaction(
    team: str, payload: dict[str, Any], event: dict[str, Any], taxonomy: Taxonomy, occurred_at: datetime
) -> Activity | Ignored:
    account = _account(event.get("user"), taxonomy)
    if isinstance(account, Ignored):
        return account
    whose = "own" if event.get("item_user") == account.user_id else "others"
    item = event.get("item") or {}
    meta = {"team": team, "reaction": event.get("reaction"), "channel": item.get("channel"), "item_ts": item.get("ts")}
    if payload.get("event_id") is not None:
        key = f"{PLATFORM}:{team}:event:{identifier(payload.get('event_id'), 'event_id')}"
    else:  # older deliveries (and some fixtures) carry no event_id: key by what was reacted to, and when
        parts = [account.user_id, event.get("reaction"), item.get("channel"), item.get("ts"), event.get("event_ts")]
        key = f"{PLATFORM}:{team}:reaction:" + ":".join(identifier(p, "a reaction field") for p in parts)
    moment = ts_moment(event.get("event_ts"), occurred_at) if event.get("event_ts") else occurred_at
    return _activity(f"reaction_added.{whose}", key, account, moment, meta, taxonomy)


def _join(
    team: str, payload: dict[str, Any], event: dict[str, Any], taxonomy: Taxonomy, occurred_at: datetime
) -> Activity | Ignored:
    user = event.get("user")
    email = None
    if isinstance(user, dict):  # team_join carries the whole user object
        if user.get("is_bot") or user.get("is_app_user"):
            return Ignored("bot", "bot and app users never score")
        profile = user.get("profile") or {}
        email = normalize_email(profile.get("email"))
        name = profile.get("real_name") or user.get("real_name")
        user = user.get("id")
    else:
        name = None
    account = _account(user, taxonomy, email=email, display_name=name if isinstance(name, str) and name else None)
    if isinstance(account, Ignored):
        return account
    key = f"{PLATFORM}:{team}:event:{identifier(payload.get('event_id'), 'event_id')}"
    meta = {"team": team, "channel": event.get("channel")}
    return _activity(str(event.get("type")), key, account, occurred_at, meta, taxonomy)


def _account(
    user: Any, taxonomy: Taxonomy, email: str | None = None, display_name: str | None = None
) -> Account | Ignored:
    if not isinstance(user, str) or not user:
        return Ignored("no_user", "the event names no Slack user")
    user_id = identifier(user, "the Slack user id")
    if user_id.lower() in taxonomy.bot_names(PLATFORM):
        return Ignored("bot", f"{user_id} is a bot user")
    return Account(PLATFORM, user_id, handle=user_id, email=email, display_name=display_name)


def _activity(
    signal: str, key: str, account: Account, occurred_at: datetime, meta: dict[str, Any], taxonomy: Taxonomy
) -> Activity | Ignored:
    mapping = taxonomy.mapping.get(PLATFORM, {})
    if signal not in mapping:
        return Ignored("no_mapping", f"no mapping for slack signal {signal}")
    action = mapping[signal]
    if action is None:
        return Ignored("not_scored", f"slack {signal} maps to no action", account=account)
    return Activity(key, PLATFORM, signal, action, account, occurred_at, meta)
