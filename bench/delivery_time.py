"""In-process time per GitHub delivery against the floor of HMAC-SHA256 plus json.loads.

Three figures for the same real body (`pull_request.opened` from ../shared/samples/github, or the
bundled events/ sample when the shared samples are absent):

- floor: verify the signature and parse the JSON, nothing else;
- handler, stubbed DynamoDB: the whole handler path (request parsing, verification, mapping,
  normalization, scoring, item serialization) with a DynamoDB client that answers in memory;
- handler, moto server: the same through a real HTTP DynamoDB endpoint, for reference only
  (moto is far slower than DynamoDB; its time is not ours).

Every delivery gets a fresh delivery id and PR id so each is stored, not a duplicate. Run by hand:

    .venv/bin/python bench/delivery_time.py [--n 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "samples" / "github" / "pull_request.opened.json"
SECRET = "bench-secret"
os.environ.update(
    {
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "GITHUB_WEBHOOK_SECRET": SECRET,
    }
)


def payload() -> dict[str, Any]:
    if SAMPLE.exists():
        return json.loads(SAMPLE.read_text())
    event = json.loads((ROOT / "events" / "github-webhook.pull_request.json").read_text())
    return json.loads(event["body"])


def bodies(n: int) -> list[bytes]:
    base = payload()
    out = []
    for i in range(n):
        base["pull_request"]["id"] = 10_000_000 + i
        out.append(json.dumps(base).encode())
    return out


class StubDynamoDB:
    """Answers the calls the store makes, from memory: enough to time our own code."""

    def __init__(self) -> None:
        self.member = {
            "member_id": {"S": "m"},
            "event_count": {"N": "1"},
            "version": {"N": "1"},
            "a_7776000_2": {"N": "20.5"},
        }

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        key = kwargs["Key"]
        if "member_id" in key:
            return {"Item": self.member}
        if key.get("key", {}).get("S", "").startswith("account#"):
            return {"Item": {"key": key["key"], "member_id": {"S": "m"}}}
        return {}

    def transact_write_items(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        return {"UnprocessedItems": {}}


def time_floor(items: list[bytes]) -> float:
    key = SECRET.encode()
    start = time.perf_counter()
    for body in items:
        digest = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        hmac.compare_digest(digest, digest)
        json.loads(body)
    return (time.perf_counter() - start) / len(items)


def time_handler(items: list[bytes], client: Any) -> float:
    from engagement.adapters.dynamo import Store
    from engagement.domain.signatures import sign
    from engagement.handlers import github_webhook, ingest
    from engagement.settings import Settings

    settings = Settings.from_env()
    deps = ingest.Dependencies(settings=settings, store=Store(settings, client))
    events = []
    for i, body in enumerate(items):
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": f"bench-{i}",
            "X-Hub-Signature-256": sign(SECRET, body),
        }
        events.append(
            {
                "headers": headers,
                "body": body.decode(),
                "isBase64Encoded": False,
                "requestContext": {"requestId": str(i)},
            }
        )
    from engagement.observability import metrics

    start = time.perf_counter()
    for event in events:
        response = ingest.handle(github_webhook.PLATFORM, event, deps)
        assert response["statusCode"] == 202, response
        metrics.clear_metrics()  # the deployed handler flushes them once per invocation
    return (time.perf_counter() - start) / len(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--moto-n", type=int, default=200)
    args = parser.parse_args()
    items = bodies(args.n)
    print(f"body: {len(items[0])} bytes ({'shared sample' if SAMPLE.exists() else 'events/ sample'})")
    time_floor(items[:100])
    time_handler(items[:50], StubDynamoDB())  # warm-up: imports and caches
    floor = time_floor(items)
    stubbed = time_handler(items, StubDynamoDB())
    print(f"floor (HMAC + json.loads):        {floor * 1e6:9.1f} µs")
    print(f"handler, stubbed DynamoDB:        {stubbed * 1e6:9.1f} µs  ({stubbed / floor:.1f}x floor)")

    from engagement.local.stack import LocalStack

    stack = LocalStack().start(prefer_running=False)
    try:
        moto = time_handler(bodies(args.moto_n), stack.client())
        print(f"handler, moto server (reference): {moto * 1e6:9.1f} µs  ({moto / floor:.1f}x floor)")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
