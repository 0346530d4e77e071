"""`engagement backfill` as an engineer runs it: against a local stack and a Discord-shaped HTTP server."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from engagement.domain import discord_messages
from tests.integration.test_cli import EXE, ROOT, cli_env

CHANNEL = "900000000000000077"


def messages(start: datetime, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(discord_messages.snowflake_at(start + timedelta(minutes=i)) + i),
            "channel_id": CHANNEL,
            "type": 0,
            "content": f"hello {i}",
            "timestamp": (start + timedelta(minutes=i)).isoformat(),
            "author": {"id": str(81000000000000000 + i % 5), "username": f"member{i % 5}"},
            "reactions": [],
        }
        for i in range(count)
    ]


@pytest.fixture
def discord_server():
    """GET /channels/{id}/messages?after&limit, answered as Discord does (newest first, at most `limit`)."""
    history = messages(datetime.now(UTC) - timedelta(days=2), 130)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            after, limit = int(query["after"][0]), int(query["limit"][0])
            page = sorted((m for m in history if int(m["id"]) > after), key=lambda m: int(m["id"]))[:limit]
            body = json.dumps(list(reversed(page))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", history
    server.shutdown()


def backfill(args: list[str], tmp_path: Path, extra: dict[str, str]) -> Any:
    import subprocess

    env = {**cli_env(tmp_path), **extra}
    return subprocess.run(EXE + ["backfill", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_backfill_imports_history_then_a_second_run_finds_nothing_new(stack, discord_server, tmp_path):
    base_url, history = discord_server
    since = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    env = {
        "AWS_ENDPOINT_URL_DYNAMODB": stack.endpoint,
        "DISCORD_BOT_TOKEN": "local-bot-token",
        "DISCORD_CHANNEL_IDS": CHANNEL,
        "DISCORD_API_BASE_URL": base_url,
    }
    first = backfill(["discord", "--since", since, "--max-pages", "1"], tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert f"discord channel:{CHANNEL}: budget, 1 pages, 100 stored" in first.stdout
    assert "run the same command again to continue" in first.stdout

    second = backfill(["discord", "--since", since], tmp_path, env)
    assert second.returncode == 0, second.stderr
    assert f"discord channel:{CHANNEL}: caught_up, 1 pages, 30 stored" in second.stdout

    events = stack.client().scan(TableName="engagement-events", Select="COUNT")["Count"]
    assert events == len(history) == 130


def test_backfill_of_an_unconfigured_platform_says_what_is_missing(stack, tmp_path):
    result = backfill(["meetup", "--since", "2026-01-01"], tmp_path, {"AWS_ENDPOINT_URL_DYNAMODB": stack.endpoint})
    assert result.returncode == 2
    assert "meetup is not configured" in result.stderr and "MEETUP_TOKEN" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["slack", "--since", "2026-01-01"], "unknown platform"),
        (["discord", "--since", "yesterday"], "--since must be a date"),
        (["discord", "--since", "2999-01-01"], "must not be in the future"),
    ],
)
def test_backfill_refuses_bad_arguments(tmp_path, args, message):
    result = backfill(args, tmp_path, {})
    assert result.returncode == 2
    assert message in result.stderr
