"""Discourse webhook deliveries to activities.

Discourse wraps every body as `{"<event type>": <object>}` and names the event in
`X-Discourse-Event`. Accounts are keyed by forum host and user id, since one company may run
several forums. A post payload does not say who started its topic, so the first post of each
topic is remembered (`registers_owner`) and later replies are compared with it; a reply in a
topic that started before the webhook existed counts as an answer (signal
`post_created.reply.unknown_topic`, which the taxonomy may map differently).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from engagement.domain.activity import (
    Account,
    Activity,
    Ignored,
    PayloadShapeError,
    email_and_links,
    identifier,
    is_identifier,
    parse_timestamp,
    profile_links,
)
from engagement.domain.taxonomy import Taxonomy

PLATFORM = "discourse"
USER_EVENTS = frozenset({"user_created", "user_updated", "user_approved"})
REGULAR_POST = 1
PRIVATE_MESSAGE = "private_message"

TopicOwnerLookup = Callable[[str], str | None]


def instance_host(instance: str) -> str:
    """The forum's host name from the `X-Discourse-Instance` header (a base URL).

    Raises:
        PayloadShapeError: the header holds no usable host name.
    """
    text = instance.strip()
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        host = None
    if not host or len(host) > 253:
        raise PayloadShapeError("the X-Discourse-Instance header holds no host name")
    return host.lower()


def topic_key(host: str, topic_id: Any) -> str:
    return f"{PLATFORM}:{host}:topic:{identifier(topic_id, 'the topic id')}"


def classify(
    event_name: str,
    instance: str,
    payload: dict[str, Any],
    taxonomy: Taxonomy,
    received_at: datetime,
    topic_owner: TopicOwnerLookup,
) -> Activity | Ignored:
    """Map one Discourse delivery to an activity, or say why it maps to none.

    Args:
        event_name: the `X-Discourse-Event` header (`post_created`, `accepted_solution`, ...).
        instance: the `X-Discourse-Instance` header (the forum's base URL).
        payload: the decoded JSON body.
        taxonomy: supplies the mapping and the configured system usernames.
        received_at: when we received the delivery; fallback and upper bound for timestamps.
        topic_owner: looks up the account key of a topic's author by `topic_key`, or None.
    """
    if event_name == "ping":
        return Ignored("ping", "ping: the webhook is configured and reaches us")
    host = instance_host(instance)
    system = taxonomy.bot_names(PLATFORM)

    if event_name in USER_EVENTS:
        user = payload.get("user") or {}
        reason = _not_a_person(user.get("id"), user.get("username"), system)
        if reason:
            return Ignored("bot", reason)
        email, links = email_and_links(user.get("email"))
        account = _account(host, user.get("id"), user.get("username"), email)
        name = user.get("name")
        links += profile_links(user.get("user_fields"), taxonomy.identity.profile_fields.get(PLATFORM, {}))
        account = replace(
            account,
            display_name=name.strip()[:128] if isinstance(name, str) and name.strip() else None,
            profile_links=links,
        )
        return Ignored(
            "identity", f"{event_name} carries no scoring action; the account's email was recorded", account=account
        )

    if event_name == "topic_created":
        topic = payload.get("topic") or {}
        creator = topic.get("created_by") or {}
        user_id = creator.get("id", topic.get("user_id"))
        if topic.get("archetype") == PRIVATE_MESSAGE:
            return Ignored("private", "private messages are not community activity")
        meta = {"topic_id": topic.get("id"), "title": topic.get("title"), "category_id": topic.get("category_id")}
        return _activity(
            host,
            "topic_created",
            topic_key(host, topic.get("id")),
            user_id,
            creator.get("username"),
            topic.get("created_at"),
            meta,
            taxonomy,
            received_at,
            registers_topic=topic.get("id"),
        )

    if event_name == "post_created":
        post = payload.get("post") or {}
        skip = _unscored_post(post)
        if skip:
            return skip
        meta = _post_meta(post)
        if post.get("post_number") == 1:
            return _activity(
                host,
                "post_created.first",
                topic_key(host, post.get("topic_id")),
                post.get("user_id"),
                post.get("username"),
                post.get("created_at"),
                meta,
                taxonomy,
                received_at,
                registers_topic=post.get("topic_id"),
            )
        owner = topic_owner(topic_key(host, post.get("topic_id")))
        author = f"{PLATFORM}:{host}/{post.get('user_id')}"
        whose = "unknown_topic" if owner is None else ("own" if owner == author else "others")
        return _activity(
            host,
            f"post_created.reply.{whose}",
            f"{PLATFORM}:{host}:post:{identifier(post.get('id'), 'post.id')}",
            post.get("user_id"),
            post.get("username"),
            post.get("created_at"),
            meta,
            taxonomy,
            received_at,
        )

    if event_name == "accepted_solution":
        post = payload.get("solved") or {}
        return _activity(
            host,
            "accepted_solution",
            f"{PLATFORM}:{host}:solved:{identifier(post.get('id'), 'solved.id')}",
            post.get("user_id"),
            post.get("username"),
            None,
            _post_meta(post),
            taxonomy,
            received_at,
        )

    if event_name == "post_liked":
        like = payload.get("like") or {}
        post, liker = like.get("post") or {}, like.get("user") or {}
        whose = "own" if liker.get("id") is not None and liker.get("id") == post.get("user_id") else "others"
        return _activity(
            host,
            f"post_liked.{whose}",
            f"{PLATFORM}:{host}:like:{identifier(post.get('id'), 'like.post.id')}:{liker.get('id')}",
            liker.get("id"),
            liker.get("username"),
            None,
            _post_meta(post),
            taxonomy,
            received_at,
        )

    return Ignored("unmapped", f"no mapping for discourse event {event_name!r}")


def _activity(
    host: str,
    signal: str,
    event_id: str,
    user_id: Any,
    username: Any,
    occurred_at: Any,
    metadata: dict[str, Any],
    taxonomy: Taxonomy,
    received_at: datetime,
    registers_topic: Any = None,
) -> Activity | Ignored:
    reason = _not_a_person(user_id, username, taxonomy.bot_names(PLATFORM))
    if reason:
        return Ignored("bot", reason)
    mapping = taxonomy.mapping.get(PLATFORM, {})
    if signal not in mapping:
        return Ignored("unmapped", f"no mapping for discourse signal {signal!r}")
    action = mapping[signal]
    if action is None:
        return Ignored("no_action", f"discourse signal {signal!r} maps to no action")
    account = _account(host, user_id, username, None)
    registers = (topic_key(host, registers_topic), account.key) if registers_topic is not None else None
    return Activity(
        event_id=event_id,
        platform=PLATFORM,
        signal=signal,
        action=action,
        account=account,
        occurred_at=parse_timestamp(occurred_at, received_at),
        metadata={"instance": host, **metadata},
        registers_owner=registers,
    )


def _account(host: str, user_id: Any, username: Any, email: str | None) -> Account:
    return Account(PLATFORM, f"{host}/{user_id}", handle=username if isinstance(username, str) else None, email=email)


def _not_a_person(user_id: Any, username: Any, system: frozenset[str]) -> str | None:
    if not is_identifier(user_id):
        return "the delivery names no user to credit"
    try:
        numeric = int(user_id)
    except ValueError:
        numeric = 1
    if numeric <= 0:
        return f"user {username or user_id} is a Discourse system account (id {user_id})"
    if isinstance(username, str) and username.lower() in system:
        return f"{username} is listed as a system account in the taxonomy"
    return None


def _unscored_post(post: dict[str, Any]) -> Ignored | None:
    if post.get("topic_archetype") == PRIVATE_MESSAGE:
        return Ignored("private", "private messages are not community activity")
    if post.get("post_type", REGULAR_POST) != REGULAR_POST:
        return Ignored("not_regular", f"post type {post.get('post_type')} is not a regular post (a whisper or notice)")
    if post.get("deleted_at") or post.get("hidden"):
        return Ignored("hidden", "the post is hidden or deleted")
    return None


def _post_meta(post: dict[str, Any]) -> dict[str, Any]:
    return {
        "topic_id": post.get("topic_id"),
        "post_id": post.get("id"),
        "post_number": post.get("post_number"),
        "title": post.get("topic_title"),
        "category_id": post.get("category_id"),
    }
