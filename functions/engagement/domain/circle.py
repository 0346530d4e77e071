"""Circle posts, comments and event attendees (Admin API records) to activities.

Circle publishes no signed webhooks, so a poller reads the Admin API and hands each record here.
Rules:

- A published post starts a thread (`post.published`, like a forum topic); its author is
  remembered so that comments can be compared with it. Drafts and scheduled posts score nothing.
- A comment on another member's post is an answer (`comment.others`); on one's own post nothing;
  on a post whose author we never saw (it predates the poller's window) an answer
  (`comment.unknown_post`, mappable like Discourse's unknown topic).
- An attendee of an event that has ended attended it: `event_attendee.in_person` or
  `event_attendee.virtual` by the event's `location_type` (`in_person`; `virtual` and
  `live_stream` are virtual; anything else, e.g. `tbd`, is `event_attendee.unknown_location`).
  Where an attendee record carries a check-in field, only checked-in attendees count.
- Identity: Circle's user id, with the member's email, and the SSO subject where the record has one
  (see `account_for`).

Records are read in both shapes Circle has used: v1's flat `user_id` / `user_email` / `user_name`
(the published samples) and nested `user` / `community_member` / `author` objects.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from engagement.domain.activity import (
    Account,
    Activity,
    Ignored,
    PayloadShapeError,
    identifier,
    is_identifier,
    normalize_email,
    parse_timestamp,
)
from engagement.domain.taxonomy import Taxonomy

PLATFORM = "circle"
IN_PERSON = frozenset({"in_person"})
VIRTUAL = frozenset({"virtual", "live_stream", "online"})
PERSON_KEYS = ("user", "community_member", "author", "member")
SSO_KEYS = ("sso_provider_user_id", "sso_user_id", "sso_id", "sso_subject")


def post_key(post_id: Any) -> str:
    return f"{PLATFORM}:post:{identifier(post_id, 'the post id')}"


def _person(record: dict[str, Any]) -> dict[str, Any]:
    """The person a record belongs to, flattened to `id`, `email`, `name`, `sso`."""
    for key in PERSON_KEYS:
        nested = record.get(key)
        if isinstance(nested, dict):
            return {
                "id": nested.get("id", nested.get("user_id")),
                "email": nested.get("email"),
                "name": nested.get("name"),
                "sso": next((nested[k] for k in SSO_KEYS if is_identifier(nested.get(k))), None),
            }
    return {
        "id": record.get("user_id", record.get("community_member_id")),
        "email": record.get("user_email", record.get("email")),
        "name": record.get("user_name", record.get("name")),
        "sso": next((record[k] for k in SSO_KEYS if is_identifier(record.get(k))), None),
    }


def account_for(record: dict[str, Any]) -> tuple[Account, str | None]:
    """The account of a record's author and its SSO subject, if the record carries one.

    The subject is set on the account (identity resolution links accounts sharing it) and also
    returned, so the caller keeps it in the event's metadata (`sso_subject`).

    Raises:
        PayloadShapeError: the record names no user id.
    """
    person = _person(record)
    sso = str(person["sso"]) if person["sso"] is not None else None
    name = person["name"] if isinstance(person["name"], str) and person["name"] else None
    values: dict[str, Any] = {
        "platform": PLATFORM,
        "user_id": identifier(person["id"], "the Circle user id"),
        "handle": name,
        "email": normalize_email(person["email"]),
        "display_name": name,
    }
    if sso and "sso_subject" in {f.name for f in fields(Account)}:
        values["sso_subject"] = sso
    return Account(**values), sso


def _activity(
    event_id: str,
    signal: str,
    taxonomy: Taxonomy,
    account: Account,
    occurred_at: datetime,
    metadata: dict[str, Any],
    registers_owner: tuple[str, str] | None = None,
) -> Activity | Ignored:
    action = taxonomy.mapping.get(PLATFORM, {}).get(signal)
    if action is None:
        return Ignored("unmapped", f"circle signal {signal} maps to no action")
    return Activity(
        event_id=event_id,
        platform=PLATFORM,
        signal=signal,
        action=action,
        account=account,
        occurred_at=occurred_at,
        metadata=metadata,
        registers_owner=registers_owner,
    )


def classify_post(post: dict[str, Any], taxonomy: Taxonomy, read_at: datetime) -> Activity | Ignored:
    """A post record to `post.published`, or why it scores nothing."""
    if not isinstance(post, dict):
        raise PayloadShapeError("a post must be a JSON object")
    key = post_key(post.get("id"))
    status = post.get("status", "published")
    if status != "published":
        return Ignored("not_published", f"the post is {status}, not published")
    account, sso = account_for(post)
    space = post.get("space") if isinstance(post.get("space"), dict) else {}
    return _activity(
        key,
        "post.published",
        taxonomy,
        account,
        parse_timestamp(post.get("published_at") or post.get("created_at"), read_at),
        {
            "post_id": str(post.get("id")),
            "space_id": post.get("space_id", space.get("id")),
            "title": post.get("name"),
            "url": post.get("url"),
            "sso_subject": sso,
        },
        registers_owner=(key, account.key),
    )


def comment_post_id(comment: dict[str, Any]) -> Any:
    post = comment.get("post")
    return post.get("id") if isinstance(post, dict) else comment.get("post_id")


def classify_comment(
    comment: dict[str, Any], taxonomy: Taxonomy, read_at: datetime, post_owner: str | None
) -> Activity | Ignored:
    """A comment record, compared with its post's author (`post_owner`: an account key, or None if unknown)."""
    if not isinstance(comment, dict):
        raise PayloadShapeError("a comment must be a JSON object")
    comment_id = identifier(comment.get("id"), "the comment id")
    post_id = identifier(comment_post_id(comment), "the comment's post id")
    account, sso = account_for(comment)
    if post_owner is None:
        signal = "comment.unknown_post"
    elif post_owner == account.key:
        signal = "comment.own"
    else:
        signal = "comment.others"
    return _activity(
        f"{PLATFORM}:comment:{comment_id}",
        signal,
        taxonomy,
        account,
        parse_timestamp(comment.get("created_at"), read_at),
        {
            "comment_id": comment_id,
            "post_id": post_id,
            "parent_comment_id": comment.get("parent_comment_id"),
            "url": comment.get("url"),
            "sso_subject": sso,
        },
    )


def event_ended(event: dict[str, Any], now: datetime) -> bool:
    """Whether an event record's end (or, lacking one, its start) is in the past."""
    end = event.get("ends_at") or event.get("end_date") or event.get("starts_at") or event.get("start_date")
    if not end:
        return False
    return parse_timestamp(end, now) < now


def event_time(event: dict[str, Any], now: datetime) -> datetime:
    return parse_timestamp(event.get("starts_at") or event.get("start_date") or event.get("ends_at"), now)


def classify_attendee(
    event: dict[str, Any], attendee: dict[str, Any], taxonomy: Taxonomy, read_at: datetime
) -> Activity | Ignored:
    """An attendee record of an event that has ended."""
    if not isinstance(attendee, dict):
        raise PayloadShapeError("an attendee must be a JSON object")
    event_id = identifier(event.get("id"), "the event id")
    for field_name in ("checked_in_at", "checked_in"):
        if field_name in attendee and not attendee[field_name]:
            return Ignored("not_checked_in", "the attendee did not check in")
    account, sso = account_for(attendee)
    location = str(event.get("location_type") or "").lower()
    if location in IN_PERSON:
        signal = "event_attendee.in_person"
    elif location in VIRTUAL:
        signal = "event_attendee.virtual"
    else:
        signal = "event_attendee.unknown_location"
    return _activity(
        f"{PLATFORM}:event:{event_id}:attendee:{account.user_id}",
        signal,
        taxonomy,
        account,
        event_time(event, read_at),
        {"event_id": event_id, "event_name": event.get("name"), "location_type": location, "sso_subject": sso},
    )
