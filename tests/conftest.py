"""Shared fixtures: a real DynamoDB endpoint over HTTP (moto server), signed API Gateway events."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "samples"
EVENTS = ROOT / "events"
SECRET = "test-webhook-secret"

os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_DEV": "false",
    }
)
for name in (
    "AWS_ENDPOINT_URL",
    "HUBSPOT_TOKEN",
    "CRM_PROVIDER",
    "ENGAGEMENT_CONFIG_FILE",
    "ENGAGEMENT_CONFIG_PARAMETER",
):
    os.environ.pop(name, None)


def sample(relative: str) -> Path:
    """A file from ../shared/samples; the test is skipped where the shared samples are absent."""
    path = SAMPLES / relative
    if not path.exists():
        pytest.skip(f"shared sample {relative} is not available on this machine")
    return path


def load_sample(relative: str) -> Any:
    return json.loads(sample(relative).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:

    from engagement.local.stack import atomic_moto_server

    server = atomic_moto_server()
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    yield endpoint
    server.stop()


@pytest.fixture
def stack(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A clean set of the project's tables on the moto endpoint."""
    from engagement.local.stack import LocalStack

    httpx.post(f"{moto_endpoint}/moto-api/reset")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", moto_endpoint)
    monkeypatch.setenv("ENGAGEMENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OUTBOX_PATH", str(tmp_path / "outbox.jsonl"))
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("DISCOURSE_WEBHOOK_SECRET", SECRET)
    local = LocalStack(moto_endpoint).start()
    yield local


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def deps(stack: Any, clock: Clock) -> Any:
    """Pipeline dependencies on the moto endpoint, with a fixed clock."""
    import boto3

    from engagement.adapters.dynamo import Store
    from engagement.handlers.ingest import Dependencies
    from engagement.settings import Settings

    settings = Settings.from_env()
    client = boto3.client("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1")
    return Dependencies(settings=settings, store=Store(settings, client), clock=clock)


class Context:
    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:test-function"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def context() -> Context:
    return Context()


def rest_event(
    body: bytes | None, headers: dict[str, str], path: str = "/webhooks/github", base64_body: bool = False
) -> dict[str, Any]:
    """An API Gateway REST API (v1) proxy event, as AWS delivers it."""
    if body is None:
        text = None
    elif base64_body:
        text = base64.b64encode(body).decode("ascii")
    else:
        text = body.decode("utf-8")
    return {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "resourcePath": path,
            "httpMethod": "POST",
            "stage": "dev",
            "identity": {"sourceIp": "192.0.2.10"},
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


def http_api_event(
    body: bytes, headers: dict[str, str], path: str = "/webhooks/github", base64_body: bool = False
) -> dict[str, Any]:
    """An HTTP API (v2) event: header names arrive lower-cased."""
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "http": {"method": "POST", "path": path},
            "stage": "$default",
        },
        "body": base64.b64encode(body).decode("ascii") if base64_body else body.decode("utf-8"),
        "isBase64Encoded": base64_body,
    }


def github_headers(
    event: str, body: bytes, delivery: str | None = None, secret: str = SECRET, content_type: str = "application/json"
) -> dict[str, str]:
    from engagement.domain.signatures import sign

    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/test",
    }


def discourse_headers(
    event: str,
    event_type: str,
    body: bytes,
    event_id: int = 1,
    instance: str = "https://forum.example.com",
    secret: str = SECRET,
) -> dict[str, str]:
    from engagement.domain.signatures import sign

    return {
        "X-Discourse-Event": event,
        "X-Discourse-Event-Type": event_type,
        "X-Discourse-Event-Id": str(event_id),
        "X-Discourse-Instance": instance,
        "X-Discourse-Event-Signature": sign(secret, body),
        "Content-Type": "application/json",
    }


def github_push(login: str, user_id: int, email: str) -> dict[str, Any]:
    """A push whose pusher is the sender: the way a GitHub account learns its owner's email."""
    return {
        "ref": "refs/heads/topic",
        "after": "1" * 40,
        "commits": [],
        "head_commit": None,
        "repository": {"id": 1, "full_name": "acme/sdk"},
        "pusher": {"name": login, "email": email},
        "sender": {"login": login, "id": user_id, "type": "User"},
    }


def response_json(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])


@pytest.fixture(autouse=True)
def fresh_metrics() -> Iterator[None]:
    """Tests call the pipeline without the handler's per-invocation flush; start each one clean."""
    from engagement.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()
