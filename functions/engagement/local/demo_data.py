"""The demo's community: invented people and deliveries shaped like GitHub's and Discourse's.

Payloads follow the published formats (the fields this project reads, and the wrappers and
headers each platform sends), with every person, address and id made up. Timestamps are given
in days before the demo runs, so the decayed scores look the same whenever it is run.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

FORUM = "https://community.aurora-labs.example"
ORG = {"login": "aurora-labs", "id": 9100000, "type": "Organization", "site_admin": False}
REPO = {
    "id": 9200001,
    "name": "aurora-sdk",
    "full_name": "aurora-labs/aurora-sdk",
    "private": False,
    "owner": ORG,
    "html_url": "https://github.com/aurora-labs/aurora-sdk",
    "default_branch": "main",
}


@dataclass(frozen=True)
class Person:
    name: str
    email: str | None
    github: tuple[str, int] | None = None  # (login, id)
    discourse: tuple[str, int] | None = None  # (username, id)


PRIYA = Person("Priya Raman", "Priya.Raman@example.com", ("priya-builds", 7100001), ("priya", 11))
MARCO = Person("Marco Bellini", "marco@example.net", ("mbellini", 7100002), ("marco_b", 12))
LENA = Person("Lena Fischer", "lena.fischer@example.org", None, ("lena.f", 13))
AIKO = Person("Aiko Tanaka", "aiko@example.com", None, ("aiko", 14))
TOMAS = Person("Tomás Ortega", None, ("tortega", 7100003), None)
DEPENDABOT = {"login": "dependabot[bot]", "id": 49699333, "type": "Bot", "site_admin": False}
SYSTEM = ("system", -1)


@dataclass
class Delivery:
    platform: str
    headers: dict[str, str]
    payload: dict[str, Any]
    note: str
    raw: bytes = field(default=b"")

    def body(self) -> bytes:
        return self.raw or json.dumps(self.payload).encode("utf-8")


class _Ids:
    def __init__(self) -> None:
        self.counter = itertools.count(30_000_001)

    def __call__(self) -> int:
        return next(self.counter)


def _at(now: datetime, days_ago: float) -> str:
    return (now - timedelta(days=days_ago)).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _gh_user(person: Person) -> dict[str, Any]:
    assert person.github
    login, user_id = person.github
    return {
        "login": login,
        "id": user_id,
        "type": "User",
        "site_admin": False,
        "html_url": f"https://github.com/{login}",
    }


def build(now: datetime | None = None) -> list[Delivery]:
    """Every delivery the demo posts, in order: identities first, as a community would see them."""
    now = now or datetime.now(UTC)
    ids = _Ids()
    event_ids = itertools.count(5001)
    out: list[Delivery] = []

    def github(event: str, payload: dict[str, Any], note: str, delivery: str | None = None) -> Delivery:
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "420001",
            "User-Agent": "GitHub-Hookshot/demo",
            "Content-Type": "application/json",
        }
        item = Delivery("github", headers, {**payload, "repository": REPO}, note)
        out.append(item)
        return item

    def discourse(event_type: str, event: str, payload: dict[str, Any], note: str) -> Delivery:
        headers = {
            "X-Discourse-Instance": FORUM,
            "X-Discourse-Event-Id": str(next(event_ids)),
            "X-Discourse-Event-Type": event_type,
            "X-Discourse-Event": event,
            "User-Agent": "Discourse/3.4.0",
            "Content-Type": "application/json",
        }
        item = Delivery("discourse", headers, payload, note)
        out.append(item)
        return item

    # GitHub: pushes carry the pusher's address, which links the account to an email.
    for person, days in ((PRIYA, 6), (MARCO, 9)):
        sender = _gh_user(person)
        commits = [
            {
                "id": uuid.uuid4().hex + "abcdefgh",
                "message": "Tidy retry logic",
                "timestamp": _at(now, days),
                "author": {"name": person.name, "email": person.email, "username": sender["login"]},
            }
        ]
        github(
            "push",
            {
                "ref": f"refs/heads/{sender['login']}/retries",
                "before": "0" * 40,
                "after": commits[0]["id"],
                "commits": commits,
                "head_commit": commits[0],
                "sender": sender,
                "pusher": {"name": sender["login"], "email": person.email},
                "compare": f"{REPO['html_url']}/compare/main...{sender['login']}/retries",
            },
            f"{person.name} pushes a branch (links the GitHub account to an email)",
        )

    # Discourse: accounts with their emails, as user_created sends them.
    for person, days in ((PRIYA, 200), (MARCO, 150), (LENA, 120), (AIKO, 60)):
        assert person.discourse
        username, user_id = person.discourse
        discourse(
            "user",
            "user_created",
            {
                "user": {
                    "id": user_id,
                    "username": username,
                    "name": person.name,
                    "email": person.email,
                    "secondary_emails": [],
                    "created_at": _at(now, days),
                    "trust_level": 1,
                    "staged": False,
                    "admin": False,
                    "moderator": False,
                }
            },
            f"{person.name} joins the forum",
        )

    # Pull requests, merges and reviews.
    prs: dict[int, tuple[Person, int]] = {}
    for person, days, title in (
        (PRIYA, 5, "Add async client"),
        (PRIYA, 12, "Retry on throttling"),
        (PRIYA, 20, "Streaming uploads"),
        (PRIYA, 33, "Fix pagination cursor"),
        (PRIYA, 47, "Typed errors"),
        (MARCO, 8, "Go examples"),
        (MARCO, 25, "Docs: quick start"),
    ):
        number, pr_id = len(prs) + 101, ids()
        prs[number] = (person, pr_id)
        github(
            "pull_request",
            {
                "action": "opened",
                "number": number,
                "sender": _gh_user(person),
                "pull_request": {
                    "id": pr_id,
                    "number": number,
                    "title": title,
                    "state": "open",
                    "user": _gh_user(person),
                    "created_at": _at(now, days),
                    "merged": False,
                    "body": None,
                    "html_url": f"{REPO['html_url']}/pull/{number}",
                },
            },
            f"{person.name} opens PR #{number}",
        )
    for number, days in ((101, 3), (102, 10), (104, 30), (106, 6)):
        person, pr_id = prs[number]
        github(
            "pull_request",
            {
                "action": "closed",
                "number": number,
                "sender": ORG | {"type": "User", "login": "maintainer-kai", "id": 7100099},
                "pull_request": {
                    "id": pr_id,
                    "number": number,
                    "title": "",
                    "state": "closed",
                    "user": _gh_user(person),
                    "merged": True,
                    "merged_at": _at(now, days),
                    "closed_at": _at(now, days),
                    "html_url": f"{REPO['html_url']}/pull/{number}",
                },
            },
            f"PR #{number} by {person.name} is merged",
        )
    for reviewer, number, days in ((PRIYA, 106, 7), (PRIYA, 107, 24), (MARCO, 101, 4)):
        author, _ = prs[number]
        github(
            "pull_request_review",
            {
                "action": "submitted",
                "sender": _gh_user(reviewer),
                "review": {
                    "id": ids(),
                    "user": _gh_user(reviewer),
                    "state": "approved",
                    "submitted_at": _at(now, days),
                    "html_url": f"{REPO['html_url']}/pull/{number}#review",
                },
                "pull_request": {"number": number, "user": _gh_user(author)},
            },
            f"{reviewer.name} reviews PR #{number}",
        )

    # A newcomer: a star (GitHub also sends watch.started for it), an issue comment.
    star = {"action": "created", "starred_at": _at(now, 15), "sender": _gh_user(TOMAS)}
    github("star", star, "Tomás stars the repository")
    github("watch", {"action": "started", "sender": _gh_user(TOMAS)}, "the same star as watch.started (counted once)")
    issue = {
        "id": ids(),
        "number": 140,
        "title": "Timeout on large uploads",
        "user": _gh_user(MARCO),
        "created_at": _at(now, 14),
        "html_url": f"{REPO['html_url']}/issues/140",
    }
    github("issues", {"action": "opened", "issue": issue, "sender": _gh_user(MARCO)}, "Marco opens issue #140")
    github(
        "issue_comment",
        {
            "action": "created",
            "issue": issue,
            "sender": _gh_user(TOMAS),
            "comment": {
                "id": ids(),
                "user": _gh_user(TOMAS),
                "created_at": _at(now, 13),
                "body": "Same here on 2.3.1",
                "html_url": f"{REPO['html_url']}/issues/140#comment",
            },
        },
        "Tomás comments on Marco's issue",
    )

    # Bots never score.
    github(
        "pull_request",
        {
            "action": "opened",
            "number": 150,
            "sender": DEPENDABOT,
            "pull_request": {
                "id": ids(),
                "number": 150,
                "title": "Bump httpx",
                "user": DEPENDABOT,
                "created_at": _at(now, 2),
                "html_url": f"{REPO['html_url']}/pull/150",
            },
        },
        "dependabot opens a PR (a bot: ignored)",
    )

    # Forum topics (questions) and replies (answers in someone else's topic).
    topics: dict[int, Person] = {}
    post_ids: dict[tuple[int, int], int] = {}

    def topic(person: Person, days: float, title: str) -> int:
        assert person.discourse
        username, user_id = person.discourse
        topic_id = len(topics) + 201
        topics[topic_id] = person
        creator = {"id": user_id, "username": username, "name": person.name}
        discourse(
            "topic",
            "topic_created",
            {
                "topic": {
                    "id": topic_id,
                    "title": title,
                    "fancy_title": title,
                    "posts_count": 1,
                    "created_at": _at(now, days),
                    "archetype": "regular",
                    "category_id": 4,
                    "user_id": user_id,
                    "created_by": creator,
                    "last_poster": creator,
                    "tags": [],
                }
            },
            f"{person.name} asks: {title}",
        )
        return topic_id

    def reply(person: Person | tuple[str, int], topic_id: int, days: float, number: int) -> dict[str, Any]:
        username, user_id = person.discourse if isinstance(person, Person) else person  # type: ignore[misc]
        post_id = ids()
        post_ids[(topic_id, number)] = post_id
        post = {
            "id": post_id,
            "username": username,
            "user_id": user_id,
            "created_at": _at(now, days),
            "post_number": number,
            "post_type": 1,
            "topic_id": topic_id,
            "topic_slug": f"topic-{topic_id}",
            "topic_title": f"Topic {topic_id}",
            "category_id": 4,
            "topic_archetype": "regular",
            "raw": "Here is how I solved it ...",
            "cooked": "<p>Here is how I solved it ...</p>",
            "deleted_at": None,
            "hidden": False,
            "reply_to_post_number": None,
        }
        name = person.name if isinstance(person, Person) else username
        discourse("post", "post_created", {"post": post}, f"{name} replies in topic {topic_id}")
        return post

    lena1 = topic(LENA, 40, "How do I page through results?")
    lena2 = topic(LENA, 22, "Webhook retries and idempotency")
    lena3 = topic(LENA, 9, "Rate limits in the async client")
    aiko1 = topic(AIKO, 18, "Getting started on Windows")
    aiko2 = topic(AIKO, 4, "Upload progress callbacks")
    marco1 = topic(MARCO, 27, "Proposal: Go SDK")

    accepted = []
    for person, topic_id, days, number in (
        (PRIYA, lena1, 39, 2),
        (PRIYA, lena2, 21, 2),
        (PRIYA, lena3, 8, 2),
        (PRIYA, aiko1, 17, 2),
        (PRIYA, aiko2, 3, 2),
        (PRIYA, marco1, 26, 2),
        (MARCO, lena1, 38, 3),
        (MARCO, lena3, 8.5, 3),
        (MARCO, aiko1, 16, 3),
        (MARCO, aiko2, 2, 3),
        (LENA, aiko1, 15, 4),
        (LENA, marco1, 25, 3),
        (LENA, aiko2, 1, 4),
        (AIKO, lena3, 7, 4),
        (LENA, lena2, 20, 3),
    ):
        post = reply(person, topic_id, days, number)
        if (person, topic_id) in ((PRIYA, lena1), (PRIYA, aiko1), (MARCO, lena3)):
            accepted.append(post)
    reply(SYSTEM, lena1, 30, 5)  # a system notice: never scored
    for post in accepted:
        discourse("solved", "accepted_solution", {"solved": post}, f"{post['username']}'s answer is accepted")

    likes = [
        (LENA, (lena1, 2)),
        (LENA, (lena2, 2)),
        (LENA, (lena3, 2)),
        (LENA, (lena1, 3)),
        (LENA, (lena3, 3)),
        (AIKO, (aiko1, 2)),
        (AIKO, (aiko2, 2)),
        (AIKO, (aiko1, 3)),
    ]
    for liker, key in likes:
        assert liker.discourse
        username, user_id = liker.discourse
        post_id = post_ids[key]
        discourse(
            "like",
            "post_liked",
            {
                "like": {
                    "post": {"id": post_id, "topic_id": key[0], "post_number": key[1], "user_id": None},
                    "user": {"id": user_id, "username": username, "name": liker.name},
                }
            },
            f"{liker.name} likes a post",
        )

    # Redeliveries: GitHub resends with the same delivery id; Discourse with a new event id.
    first_pr = next(d for d in out if d.headers.get("X-GitHub-Event") == "pull_request")
    out.append(Delivery("github", dict(first_pr.headers), first_pr.payload, "GitHub redelivers PR #101 (duplicate)"))
    first_reply = next(d for d in out if d.headers.get("X-Discourse-Event") == "post_created")
    retry_headers = {**first_reply.headers, "X-Discourse-Event-Id": str(next(event_ids))}
    out.append(Delivery("discourse", retry_headers, first_reply.payload, "Discourse retries a reply (duplicate)"))
    return out
