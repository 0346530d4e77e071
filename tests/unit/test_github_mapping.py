"""Every real GitHub payload in ../shared/samples/github is accepted or ignored with a reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engagement.domain import github, taxonomy
from engagement.domain.activity import Activity, Ignored
from tests.conftest import load_sample

RECEIVED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# file -> (X-GitHub-Event, expected action, credited login, occurred at). Derived by reading each payload.
ACCEPTED = {
    "pull_request.opened.json": ("pull_request", "submit_pr", "Codertocat", "2019-05-15T15:20:33+00:00"),
    "pull_request.opened.with-null-body.json": ("pull_request", "submit_pr", "Codertocat", "2019-05-15T15:20:33+00:00"),
    # Merged PR: credit goes to the PR's author (river-dev), not to the sender who merged (maple-dev).
    "pull_request.closed.merged.real-capture.json": (
        "pull_request",
        "pr_merged",
        "river-dev",
        "2019-11-26T07:01:13+00:00",
    ),
    "issues.opened.json": ("issues", "open_issue", "Codertocat", "2019-05-15T15:20:18+00:00"),
    "issues.opened.with-empty-body.json": ("issues", "open_issue", "Codertocat", "2019-05-15T15:20:18+00:00"),
    "discussion.created.json": ("discussion", "ask", "Codertocat", "2021-03-30T20:09:52+00:00"),
    # Answer chosen: the answer's author (dan2wik) is credited at answer_chosen_at (19:17:18-04:00).
    "discussion.answered.json": ("discussion", "answer_accepted", "dan2wik", "2021-03-30T23:17:18+00:00"),
    "star.created.json": ("star", "react", "Codertocat", "2019-05-15T15:20:40+00:00"),
    "watch.started.json": ("watch", "react", "Codertocat", RECEIVED.isoformat()),
    "release.published.json": ("release", "publish_release", "Codertocat", "2019-05-15T15:20:53+00:00"),
    # head_commit.timestamp 2019-11-26T02:01:12-05:00
    "push.5-commits.real-capture.json": ("push", "push", "maple-dev", "2019-11-26T07:01:12+00:00"),
    "push.with-new-branch.json": ("push", "push", "Codertocat", "2019-05-15T15:19:25+00:00"),
    "push.with-no-username-committer.json": ("push", "push", "Codertocat", "2019-05-15T15:19:25+00:00"),
}

# file -> (X-GitHub-Event, ignore code, words the reason must contain)
IGNORED = {
    "ping.json": ("ping", "ping", "ping"),
    "ping.real-capture.json": ("ping", "ping", "ping"),
    "ping.with-app_id.json": ("ping", "ping", "ping"),
    "issue_comment.created.json": ("issue_comment", "no_action", "own issue"),
    "issue_comment.deleted.json": ("issue_comment", "no_action", "deleted comment"),
    "discussion_comment.created.json": ("discussion_comment", "no_action", "own discussion"),
    "discussion.unanswered.json": ("discussion", "no_action", "unmarked"),
    "pull_request.closed.not-merged.json": ("pull_request", "no_action", "without merging"),
    "pull_request_review.submitted.json": ("pull_request_review", "no_action", "own pull request"),
    "pull_request_review_comment.created.json": ("pull_request_review_comment", "no_action", "own pull request"),
    "star.deleted.json": ("star", "no_action", "removed star"),
    "release.created.json": ("release", "no_action", "when it is published"),
    "fork.json": ("fork", "bot", "organization"),  # Octocoders, an Organization, forked it
    "member.added.json": ("member", "unmapped", "member.added"),
    "sponsorship.created.json": ("sponsorship", "unmapped", "sponsorship.created"),
    "push.json": ("push", "no_action", "tag deletion"),  # deleted: true, no commits
}


def classify(name: str, event: str):
    return github.classify(event, "delivery-1", load_sample(f"github/{name}"), taxonomy.build(), RECEIVED)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_samples_map_to_their_action(name):
    event, action, login, occurred = ACCEPTED[name]
    outcome = classify(name, event)
    assert isinstance(outcome, Activity), outcome
    assert outcome.action == action
    assert outcome.account.handle == login
    assert outcome.occurred_at == datetime.fromisoformat(occurred)
    assert outcome.occurred_at.tzinfo is not None


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_ignored_samples_say_why(name):
    event, code, words = IGNORED[name]
    outcome = classify(name, event)
    assert isinstance(outcome, Ignored), outcome
    assert outcome.code == code
    assert words in outcome.reason


def test_every_sample_is_covered():
    from tests.conftest import sample

    folder = sample("github/ping.json").parent
    names = {p.name for p in folder.glob("*.json")} - {"signature-test-vector.json"}
    assert names == set(ACCEPTED) | set(IGNORED)


def test_star_and_watch_for_one_star_share_a_key():
    star = classify("star.created.json", "star")
    watch = classify("watch.started.json", "watch")
    assert star.event_id == watch.event_id == "github:star:186853002:21031067"


def test_push_links_the_pushers_email_only_when_it_is_the_sender():
    outcome = classify("push.5-commits.real-capture.json", "push")
    # pusher.name == sender.login == maple-dev; the address is a real one, not a noreply one.
    assert outcome.account.email == "river.dev@example.org"
    assert outcome.metadata["commit_count"] == 5
    noreply = classify("push.with-new-branch.json", "push")
    assert noreply.account.email is None  # 21031067+Codertocat@users.noreply.github.com


def _user(login, user_type="User", user_id=42):
    return {"login": login, "id": user_id, "type": user_type}


@pytest.mark.parametrize(
    ("user", "words"),
    [
        (_user("dependabot[bot]", "Bot"), "bot account"),
        (_user("renovate[bot]"), "bot account"),  # the [bot] suffix alone is enough
        (_user("ghost", user_id=10137), "deleted"),
        (None, "no user"),
        ({"login": "someone"}, "no user"),  # no id
        (_user("github-actions"), "listed as a bot"),
    ],
)
def test_bots_and_missing_users_never_score(user, words):
    payload = {
        "action": "opened",
        "pull_request": {"id": 1, "number": 1, "user": user, "created_at": None},
        "sender": user,
        "repository": {"id": 5, "full_name": "o/r"},
    }
    outcome = github.classify("pull_request", "d", payload, taxonomy.build(), RECEIVED)
    assert isinstance(outcome, Ignored)
    assert outcome.code == "bot"
    assert words in outcome.reason


def test_bot_list_is_configurable():
    custom = taxonomy.build({"bots": {"github": ["release-robot"]}})
    payload = {"action": "opened", "issue": {"id": 3, "user": _user("Release-Robot")}, "repository": {}}
    outcome = github.classify("issues", "d", payload, custom, RECEIVED)
    assert isinstance(outcome, Ignored) and outcome.code == "bot"


def test_comment_on_someone_elses_issue_is_a_comment_action():
    payload = {
        "action": "created",
        "issue": {"id": 9, "number": 4, "user": _user("alice", user_id=1)},
        "comment": {"id": 77, "user": _user("bob", user_id=2), "created_at": "2026-11-30T10:00:00Z"},
        "repository": {"id": 5, "full_name": "o/r"},
    }
    outcome = github.classify("issue_comment", "d", payload, taxonomy.build(), RECEIVED)
    assert outcome.action == "comment" and outcome.account.handle == "bob"
    assert outcome.event_id == "github:issue_comment:77"


def test_mapping_is_configuration():
    # An operator maps starring to nothing and opening an issue to "ask".
    custom = taxonomy.build({"mapping": {"github": {"star.created": None, "issues.opened": "ask"}}})
    star = github.classify("star", "d", load_sample("github/star.created.json"), custom, RECEIVED)
    assert isinstance(star, Ignored) and star.code == "no_action"
    issue = github.classify("issues", "d", load_sample("github/issues.opened.json"), custom, RECEIVED)
    assert issue.action == "ask"
