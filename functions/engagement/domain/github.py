"""GitHub webhook deliveries to activities.

Each delivery is first classified into a *signal* (`issue_comment.created.others`: a comment on
somebody else's issue), then the taxonomy's mapping turns the signal into an action or into
nothing. Who is credited is the author of the item (the PR's author when it is merged, the
answer's author when it is chosen), not necessarily the sender.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engagement.domain.activity import (
    Account,
    Activity,
    Ignored,
    is_identifier,
    normalize_email,
    parse_timestamp,
)
from engagement.domain.taxonomy import Taxonomy

PLATFORM = "github"
# GitHub shows the account of a deleted user as this placeholder.
DELETED_USER_LOGIN = "ghost"


@dataclass(frozen=True)
class Classified:
    """A signal with the user it credits, the moment it happened, and a little context."""

    signal: str
    user: Any
    occurred_at: Any
    metadata: dict[str, Any]
    dedupe_key: str | None = None
    email: str | None = None
    description: str = ""


def classify(
    event_name: str, delivery_id: str, payload: dict[str, Any], taxonomy: Taxonomy, received_at: datetime
) -> Activity | Ignored:
    """Map one GitHub delivery to an activity, or say why it maps to none.

    Args:
        event_name: the `X-GitHub-Event` header (`pull_request`, `ping`, ...).
        delivery_id: the `X-GitHub-Delivery` header, the default idempotency key.
        payload: the decoded JSON body.
        taxonomy: supplies the signal-to-action mapping and the configured bot logins.
        received_at: when we received the delivery; the fallback and upper bound for timestamps.
    """
    if event_name == "ping":
        return Ignored("ping", "ping: the webhook is configured and reaches us")
    classifier = _CLASSIFIERS.get(event_name)
    found = classifier(payload) if classifier else None
    if found is None:
        action = payload.get("action")
        name = f"{event_name}.{action}" if isinstance(action, str) else event_name
        return Ignored("unmapped", f"no mapping for github event {name!r}")

    bot_reason = _not_a_person(found.user, taxonomy.bot_names(PLATFORM))
    if bot_reason:
        return Ignored("bot", bot_reason)

    mapping = taxonomy.mapping.get(PLATFORM, {})
    if found.signal not in mapping:
        return Ignored("unmapped", f"no mapping for github signal {found.signal!r}")
    action = mapping[found.signal]
    if action is None:
        detail = f" ({found.description})" if found.description else ""
        return Ignored("no_action", f"github signal {found.signal!r} maps to no action{detail}")

    user = found.user
    account = Account(PLATFORM, str(user["id"]), handle=user.get("login"), email=found.email)
    return Activity(
        event_id=f"{PLATFORM}:{found.dedupe_key or 'delivery:' + delivery_id}",
        platform=PLATFORM,
        signal=found.signal,
        action=action,
        account=account,
        occurred_at=parse_timestamp(found.occurred_at, received_at),
        metadata={"delivery": delivery_id, "event": event_name, **found.metadata},
    )


def _not_a_person(user: Any, bot_logins: frozenset[str]) -> str | None:
    if not isinstance(user, dict) or not is_identifier(user.get("id")):
        return "the delivery names no user to credit"
    login = str(user.get("login") or "")
    if user.get("type") == "Bot" or login.lower().endswith("[bot]"):
        return f"{login or 'the user'} is a bot account"
    if user.get("type") == "Organization":
        return f"{login} is an organization account, not a person"
    if login.lower() == DELETED_USER_LOGIN:
        return "the user's account was deleted (GitHub's ghost placeholder)"
    if login.lower() in bot_logins:
        return f"{login} is listed as a bot in the taxonomy"
    return None


def _key(*parts: Any) -> str | None:
    """An item-based idempotency key, or None (fall back to the delivery id) if a part is missing."""
    if not all(is_identifier(part) for part in parts):
        return None
    return ":".join(str(part) for part in parts)


def _repo(payload: dict[str, Any]) -> dict[str, Any]:
    repo = payload.get("repository") or {}
    return {"repository": repo.get("full_name")}


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, dict) and isinstance(b, dict) and a.get("id") is not None and a.get("id") == b.get("id")


def _pull_request(p: dict[str, Any]) -> Classified | None:
    pr = p.get("pull_request") or {}
    meta = {**_repo(p), "number": pr.get("number"), "title": pr.get("title"), "url": pr.get("html_url")}
    action = p.get("action")
    if action == "opened":
        return Classified(
            "pull_request.opened", pr.get("user"), pr.get("created_at"), meta, _key("pr", pr.get("id"), "opened")
        )
    if action == "closed":
        if pr.get("merged"):
            return Classified(
                "pull_request.closed.merged",
                pr.get("user"),
                pr.get("merged_at"),
                meta,
                _key("pr", pr.get("id"), "merged"),
            )
        return Classified(
            "pull_request.closed.unmerged",
            pr.get("user"),
            pr.get("closed_at"),
            meta,
            description="closed without merging",
        )
    return None


def _review(p: dict[str, Any]) -> Classified | None:
    if p.get("action") != "submitted":
        return None
    review, pr = p.get("review") or {}, p.get("pull_request") or {}
    whose = "own" if _same(review.get("user"), pr.get("user")) else "others"
    meta = {**_repo(p), "number": pr.get("number"), "state": review.get("state"), "url": review.get("html_url")}
    return Classified(
        f"pull_request_review.submitted.{whose}",
        review.get("user"),
        review.get("submitted_at"),
        meta,
        _key("review", review.get("id")),
        description="a review of the reviewer's own pull request",
    )


def _review_comment(p: dict[str, Any]) -> Classified | None:
    if p.get("action") != "created":
        return None
    comment, pr = p.get("comment") or {}, p.get("pull_request") or {}
    whose = "own" if _same(comment.get("user"), pr.get("user")) else "others"
    meta = {**_repo(p), "number": pr.get("number"), "url": comment.get("html_url")}
    return Classified(
        f"pull_request_review_comment.created.{whose}",
        comment.get("user"),
        comment.get("created_at"),
        meta,
        _key("review_comment", comment.get("id")),
        description="a comment on the author's own pull request",
    )


def _issues(p: dict[str, Any]) -> Classified | None:
    if p.get("action") != "opened":
        return None
    issue = p.get("issue") or {}
    meta = {**_repo(p), "number": issue.get("number"), "title": issue.get("title"), "url": issue.get("html_url")}
    return Classified("issues.opened", issue.get("user"), issue.get("created_at"), meta, _key("issue", issue.get("id")))


def _issue_comment(p: dict[str, Any]) -> Classified | None:
    comment, issue = p.get("comment") or {}, p.get("issue") or {}
    if p.get("action") == "deleted":
        return Classified(
            "issue_comment.deleted",
            comment.get("user"),
            None,
            _repo(p),
            description="a deleted comment keeps the points it earned; withdrawal is not supported yet",
        )
    if p.get("action") != "created":
        return None
    whose = "own" if _same(comment.get("user"), issue.get("user")) else "others"
    meta = {**_repo(p), "number": issue.get("number"), "title": issue.get("title"), "url": comment.get("html_url")}
    return Classified(
        f"issue_comment.created.{whose}",
        comment.get("user"),
        comment.get("created_at"),
        meta,
        _key("issue_comment", comment.get("id")),
        description="a comment on the commenter's own issue",
    )


def _discussion(p: dict[str, Any]) -> Classified | None:
    discussion = p.get("discussion") or {}
    meta = {
        **_repo(p),
        "number": discussion.get("number"),
        "title": discussion.get("title"),
        "url": discussion.get("html_url"),
    }
    if p.get("action") == "created":
        return Classified(
            "discussion.created",
            discussion.get("user"),
            discussion.get("created_at"),
            meta,
            _key("discussion", discussion.get("id")),
        )
    if p.get("action") == "answered":
        answer = p.get("answer") or {}
        whose = "own" if _same(answer.get("user"), discussion.get("user")) else "others"
        return Classified(
            f"discussion.answered.{whose}",
            answer.get("user"),
            discussion.get("answer_chosen_at") or answer.get("updated_at"),
            {**meta, "answer_url": answer.get("html_url")},
            _key("discussion_answer", answer.get("id")),
            description="the author answered their own discussion",
        )
    if p.get("action") == "unanswered":
        old_answer = p.get("old_answer") or {}
        return Classified(
            "discussion.unanswered",
            old_answer.get("user"),
            None,
            meta,
            description="an answer that is unmarked keeps the credit it earned",
        )
    return None


def _discussion_comment(p: dict[str, Any]) -> Classified | None:
    if p.get("action") != "created":
        return None
    comment, discussion = p.get("comment") or {}, p.get("discussion") or {}
    whose = "own" if _same(comment.get("user"), discussion.get("user")) else "others"
    meta = {
        **_repo(p),
        "number": discussion.get("number"),
        "title": discussion.get("title"),
        "url": comment.get("html_url"),
    }
    return Classified(
        f"discussion_comment.created.{whose}",
        comment.get("user"),
        comment.get("created_at"),
        meta,
        _key("discussion_comment", comment.get("id")),
        description="a comment in the author's own discussion",
    )


def _star(p: dict[str, Any], signal: str) -> Classified:
    # GitHub sends both `star.created` and `watch.started` for one star: one key counts it once.
    repo_id = (p.get("repository") or {}).get("id")
    sender_id = (p.get("sender") or {}).get("id")
    return Classified(signal, p.get("sender"), p.get("starred_at"), _repo(p), _key("star", repo_id, sender_id))


def _star_event(p: dict[str, Any]) -> Classified | None:
    if p.get("action") == "created":
        return _star(p, "star.created")
    if p.get("action") == "deleted":
        return Classified(
            "star.deleted",
            p.get("sender"),
            None,
            _repo(p),
            description="a removed star; the star itself was counted once",
        )
    return None


def _watch(p: dict[str, Any]) -> Classified | None:
    return _star(p, "watch.started") if p.get("action") == "started" else None


def _fork(p: dict[str, Any]) -> Classified | None:
    forkee = p.get("forkee") or {}
    return Classified(
        "fork",
        p.get("sender"),
        forkee.get("created_at"),
        {**_repo(p), "fork": forkee.get("full_name")},
        _key("fork", forkee.get("id")),
    )


def _release(p: dict[str, Any]) -> Classified | None:
    release = p.get("release") or {}
    if p.get("action") == "created":
        return Classified(
            "release.created",
            release.get("author"),
            None,
            _repo(p),
            description="a release is counted when it is published",
        )
    if p.get("action") != "published":
        return None
    meta = {**_repo(p), "tag": release.get("tag_name"), "name": release.get("name"), "url": release.get("html_url")}
    return Classified(
        "release.published",
        release.get("author"),
        release.get("published_at"),
        meta,
        _key("release", release.get("id"), "published"),
    )


def _push(p: dict[str, Any]) -> Classified | None:
    commits = p.get("commits") or []
    head = p.get("head_commit") or {}
    sender = p.get("sender") or {}
    pusher = p.get("pusher") or {}
    # The pusher's address belongs to the sender when the pusher is the sender's own login.
    email = normalize_email(pusher.get("email")) if pusher.get("name") == sender.get("login") else None
    meta = {
        **_repo(p),
        "ref": p.get("ref"),
        "commit_count": len(commits),
        "head": p.get("after"),
        "commits": [c.get("id") for c in commits if isinstance(c, dict)],
        "compare": p.get("compare"),
    }
    repo = p.get("repository") or {}
    if p.get("deleted"):
        return Classified("push.deleted", p.get("sender"), None, meta, description="a branch or tag deletion")
    return Classified("push", p.get("sender"), head.get("timestamp") or repo.get("pushed_at"), meta, email=email)


_CLASSIFIERS: dict[str, Callable[[dict[str, Any]], Classified | None]] = {
    "pull_request": _pull_request,
    "pull_request_review": _review,
    "pull_request_review_comment": _review_comment,
    "issues": _issues,
    "issue_comment": _issue_comment,
    "discussion": _discussion,
    "discussion_comment": _discussion_comment,
    "star": _star_event,
    "watch": _watch,
    "fork": _fork,
    "release": _release,
    "push": _push,
}
