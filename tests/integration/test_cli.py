"""The `engagement` CLI as an engineer uses it: invoke sample events, serve, members, demo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import EVENTS, ROOT

EXE = [sys.executable, "-m", "engagement.local.cli"]


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(
        {"ENGAGEMENT_HOME": str(tmp_path / "home"), "OUTBOX_PATH": str(tmp_path / "outbox.jsonl"), "COLUMNS": "200"}
    )
    for name in ("GITHUB_WEBHOOK_SECRET", "DISCOURSE_WEBHOOK_SECRET"):
        env.pop(name, None)  # the sample events are signed with the documented local secret
    return env


def run(args: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(EXE + args, cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=timeout)


def subset(expected, actual) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and subset(v, actual[k]) for k, v in expected.items())
    return expected == actual


@pytest.mark.parametrize("event_file", sorted(p.name for p in EVENTS.glob("*.json") if ".expected." not in p.name))
def test_every_sample_event_gives_its_expected_output(event_file, tmp_path):
    function = event_file.split(".", 1)[0]
    result = run(["invoke", function, str(EVENTS / event_file)], tmp_path)
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    if isinstance(response.get("body"), str):
        response["body"] = json.loads(response["body"])
    expected = json.loads((EVENTS / event_file.replace(".json", ".expected.json")).read_text())
    assert subset(expected, response), response


def test_invoke_refuses_an_unknown_function(tmp_path):
    result = run(["invoke", "nope", str(next(EVENTS.glob("*.json")))], tmp_path)
    assert result.returncode == 2 and "unknown function" in result.stderr


def test_members_without_a_running_stack_says_how_to_start_one(tmp_path):
    result = run(["members"], tmp_path)
    assert result.returncode == 2 and "engagement serve" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_then_other_commands_see_the_same_data(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        EXE + ["serve", "--port", str(port)],
        cwd=ROOT,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        event = json.loads((EVENTS / "github-webhook.pull_request.json").read_text())
        response = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/github",
            content=event["body"].encode(),
            headers=event["headers"],
            timeout=30,
        )
        assert response.status_code == 202, response.text
        assert (
            httpx.post(
                f"http://127.0.0.1:{port}/webhooks/github", content=b"{}", headers={"Content-Type": "application/json"}
            ).status_code
            == 401
        )

        listed = run(["members", "--format", "json"], tmp_path)
        assert listed.returncode == 0, listed.stderr
        (member,) = json.loads(listed.stdout)
        assert member["identities"] == [{"platform": "github", "user_id": "8800123", "handle": "nadia-codes"}]

        # The identity admin API is served too, with the local token (the deployed one is a generated secret).
        admin = f"http://127.0.0.1:{port}/admin/members/github%3A8800123"
        shown = httpx.get(admin, headers={"Authorization": "Bearer engagement-local-secret"}, timeout=30)
        assert shown.status_code == 200, shown.text
        assert shown.json()["member_id"] == member["member_id"]
        assert httpx.get(admin, timeout=30).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/webhooks/github", timeout=30).status_code == 405
        assert member["tier"] == "Casual" and 0 < member["score"] <= 20

        csv_out = run(["members", "--format", "csv", "--tier", "casual"], tmp_path)
        assert csv_out.stdout.splitlines()[0].startswith("member_id,name,email,identities,score,tier")
        assert "github:nadia-codes" in csv_out.stdout

        recalculated = run(["recalc", "--as-of", "2027-06-01T00:00:00Z"], tmp_path)
        assert "1 members read, 1 written, 1 tier changes" in recalculated.stdout
        (member,) = json.loads(run(["members", "--format", "json"], tmp_path).stdout)
        assert member["tier"] == "Lurker"
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_demo_scores_every_human_and_no_bot(tmp_path):
    result = run(["demo"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("priya-builds", "mbellini", "lena.f", "aiko", "tortega"):
        assert name in out
    assert "dependabot" not in out.split("Community members", 1)[1]
    for tier in ("Champion", "Power User", "Active", "Casual", "Lurker"):
        assert tier in out
    outbox = tmp_path / "home" / "demo-outbox.jsonl"
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert {line["email"] for line in lines} == {
        "priya.raman@example.com",
        "marco@example.net",
        "lena.fischer@example.org",
        "aiko@example.com",
        "tomas.ortega@example.io",  # heard of once his GitHub and forum accounts were merged
    }
    # Slack and /events accounts are part of members, and Tomás is one member of two accounts after the merge.
    table = out.split("Community members", 1)[1]
    assert "slack:U0PRIYA01" in table and "events:local-script/marco" in table
    assert "same handle 'tortega' on discourse and github" in out
    assert "discourse:tortega, github:tortega" in table


def test_recalc_refuses_a_past_moment(tmp_path):
    result = run(["recalc", "--as-of", "2020-01-01T00:00:00Z"], tmp_path)
    assert result.returncode == 2 and "must not be in the past" in result.stderr


def test_members_refuses_an_unknown_tier(tmp_path):
    result = run(["members", "--tier", "Nonsense"], tmp_path)
    assert result.returncode == 2 and "unknown tier 'Nonsense'" in result.stderr and "Champion" in result.stderr


def test_an_unreachable_endpoint_is_one_clear_line(tmp_path):
    env = {**cli_env(tmp_path), "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{free_port()}"}
    result = subprocess.run(
        EXE + ["invoke", "github-webhook", str(EVENTS / "github-webhook.pull_request.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Cannot reach DynamoDB" in result.stderr and "Traceback" not in result.stderr
