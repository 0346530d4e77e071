"""`engagement identities ...` and `engagement forget` as an operator runs them, against a DynamoDB endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engagement.domain.activity import Account
from engagement.domain.taxonomy import build
from tests.conftest import ROOT

EXE = [sys.executable, "-m", "engagement.local.cli"]


@pytest.fixture
def cli(stack, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(
        {
            "AWS_ENDPOINT_URL_DYNAMODB": stack.endpoint,
            "ENGAGEMENT_HOME": str(tmp_path / "home"),
            "OUTBOX_PATH": str(tmp_path / "outbox.jsonl"),
            "CRM_PROVIDER": "outbox",
            "COLUMNS": "200",
        }
    )

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            EXE + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, input=stdin
        )

    return run


@pytest.fixture
def two(deps, clock):
    """Ana (Discourse, with an email) and Bo (GitHub), each a member of their own, with tiers."""
    store, tax = deps.store, build()
    ana = store.resolve(Account("discourse", "forum/1", "ana", email="ana@example.com", display_name="Ana"), clock.now)
    bo = store.resolve(Account("github", "902", "bo-dev", display_name="Bo"), clock.now)
    for member in (ana, bo):
        store.refresh(member, clock.now, tax)
    return ana, bo


def test_merge_show_unmerge_and_history(cli, two, tmp_path):
    ana, bo = two
    merged = cli("identities", "merge", "github:902", "email:ana@example.com", "--why", "same person", "--actor", "kim")
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["member_id"] == ana

    shown = json.loads(cli("identities", "show", "github:902").stdout)
    assert shown["member_id"] == ana and {m["member_id"] for m in shown["members"]} == {ana, bo}

    undone = cli("identities", "unmerge", "github:902", "--actor", "kim")
    assert undone.returncode == 0, undone.stderr
    history = json.loads(cli("identities", "history", bo).stdout)
    assert [e["action"] for e in history][-2:] == ["merged", "unmerged"]
    assert history[-2]["actor"] == "operator:kim" and history[-2]["details"][bo]["why"] == "same person"


def test_bad_identities_and_impossible_operations_are_refused_with_a_reason(cli, two):
    ana, _ = two
    unknown = cli("identities", "show", "github:404")
    assert unknown.returncode == 1 and "no member has github:404" in unknown.stderr
    garbage = cli("identities", "show", "plainword")
    assert garbage.returncode == 2 and "is not an identity" in garbage.stderr
    same = cli("identities", "merge", ana, "email:ana@example.com")
    assert same.returncode == 1 and "already one member" in same.stderr
    root = cli("identities", "unmerge", ana)
    assert root.returncode == 1 and "not merged" in root.stderr


def test_link_unlink_suggestions_and_import(cli, two, tmp_path):
    ana, bo = two
    linked = cli("identities", "link", ana, "slack:U0ANA")
    assert linked.returncode == 0 and json.loads(linked.stdout)["moved_from"] is None
    unlinked = cli("identities", "unlink", ana, "slack:U0ANA")
    assert unlinked.returncode == 0, unlinked.stderr
    assert json.loads(unlinked.stdout)["new_member_id"] not in (ana, bo)

    suggestions = cli("identities", "suggestions", "--format", "json")
    assert suggestions.returncode == 0 and isinstance(json.loads(suggestions.stdout), list)

    csv = tmp_path / "links.csv"
    csv.write_text("email,github,note\nana@example.com,902,meetup badge\nnobody@example.com,,\n", encoding="utf-8")
    imported = cli("identities", "import", str(csv))
    assert imported.returncode == 0, imported.stderr
    assert "1 merges" in imported.stdout and "line 3: needs two identities" in imported.stderr


def test_forget_asks_first_and_then_erases(cli, two, deps, tmp_path):
    ana, bo = two
    declined = cli("forget", "email:ana@example.com", stdin="n\n")
    assert declined.returncode == 1 and deps.store.get_member(ana) is not None
    done = cli("forget", "email:ana@example.com", "--yes")
    assert done.returncode == 0, done.stderr
    assert "Forgot 1 member record(s)" in done.stdout and "CRM (outbox): cleared" in done.stdout
    assert deps.store.get_member(ana) is None and deps.store.get_member(bo) is not None
    again = cli("forget", "email:ana@example.com", "--yes")
    assert again.returncode == 1 and "no member has email:ana@example.com" in again.stderr
    cleared = json.loads(Path(tmp_path / "outbox.jsonl").read_text().splitlines()[-1])
    assert cleared["cleared"] is True
