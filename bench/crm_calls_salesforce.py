"""Salesforce API calls per 1,000 changed members, counted at the HTTP transport.

1,000 members change (a materialized write each); their stream records go through the CRM sync
handler (`engagement.handlers.crm_sync.sync`) in stream batches with the real Salesforce adapter
over an in-memory transport that answers as Salesforce documents (token, sObject Collections upsert
and create, SOQL). Every request the adapter sends is counted; the OAuth token request is counted
apart (it is not a REST API call and is made once per warm function).

Scenarios: the share of members entering a task tier (each needs a Task, which costs one owner
query and one create call per batch that has any), and the stream batch size (200 as deployed for
Salesforce, 100 as for HubSpot, 1,000 as if one push carried all). Run by hand:

    .venv/bin/python bench/crm_calls_salesforce.py [--members 1000]
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

os.environ.update(
    {
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)

import httpx  # noqa: E402
from boto3.dynamodb.types import TypeSerializer  # noqa: E402

from engagement.adapters.salesforce import Auth, Credentials, Salesforce  # noqa: E402
from engagement.handlers import crm_sync  # noqa: E402
from engagement.settings import SalesforceSettings  # noqa: E402

INSTANCE = "https://bench.my.salesforce.com"
serializer = TypeSerializer()


class Transport:
    """Answers each request as Salesforce would and counts it by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.ids: dict[str, str] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/services/oauth2/token":
            self.counts["token"] += 1
            return httpx.Response(
                200, json={"access_token": "00D!bench", "instance_url": INSTANCE, "token_type": "Bearer"}
            )
        if request.method == "PATCH" and "/composite/sobjects/" in path:
            self.counts["upsert"] += 1
            results = []
            for record in json.loads(request.content)["records"]:
                ext = record["Community_Member_Id__c"]
                created = ext not in self.ids
                self.ids.setdefault(ext, f"003bx{len(self.ids):013d}")
                results.append({"id": self.ids[ext], "success": True, "errors": [], "created": created})
            return httpx.Response(200, json=results)
        if request.method == "POST" and path.endswith("/composite/sobjects"):
            self.counts["task create"] += 1
            records = json.loads(request.content)["records"]
            return httpx.Response(
                200, json=[{"id": f"00Tbx{i:013d}", "success": True, "errors": []} for i in range(len(records))]
            )
        if request.method == "GET" and path.endswith("/query"):
            self.counts["owner query"] += 1
            soql = parse_qs(urlsplit(str(request.url)).query)["q"][0]
            ids = [part.strip(" '()") for part in soql.split(" IN ", 1)[1].split(",")]
            records = [{"attributes": {"type": "Contact"}, "Id": i, "OwnerId": "005bx0000000001AAA"} for i in ids]
            return httpx.Response(200, json={"totalSize": len(records), "done": True, "records": records})
        raise AssertionError(f"unexpected request {request.method} {path}")


def image(n: int, score: float, tier: str, version: int) -> dict[str, Any]:
    return {
        "member_id": f"bench{n:05d}",
        "email": f"bench{n}@example.com",
        "name": f"bench{n}",
        "score": Decimal(str(score)),
        "tier": tier,
        "version": version,
        "last_activity_at": "2026-12-01T12:00:00+00:00",
        "event_count": 3,
    }


def record(n: int, promoted: bool) -> dict[str, Any]:
    old, new = (
        (image(n, 70.0, "Active", 1), image(n, 95.0, "Power User", 2))
        if promoted
        else (image(n, 31.0, "Active", 1), image(n, 33.0, "Active", 2))
    )
    return {
        "eventID": str(n),
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"member_id": {"S": new["member_id"]}},
            "NewImage": {k: serializer.serialize(v) for k, v in new.items()},
            "OldImage": {k: serializer.serialize(v) for k, v in old.items()},
            "SequenceNumber": f"{n:021d}",
            "SizeBytes": 300,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/engagement-members/stream/bench",
    }


class Context:
    function_name = "bench"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    aws_request_id = "bench"


def run(members: int, batch_size: int, promoted_share: float) -> Counter[str]:
    transport = Transport()
    client = httpx.Client(transport=httpx.MockTransport(transport))
    adapter = Salesforce(Auth(Credentials(INSTANCE, "bench", "bench"), client), SalesforceSettings.from_env({}), client)
    every = round(1 / promoted_share) if promoted_share else 0
    records = [record(n, bool(every) and n % every == 0) for n in range(members)]
    for start in range(0, members, batch_size):
        answer = crm_sync.sync({"Records": records[start : start + batch_size]}, Context(), adapter)
        assert answer == {"batchItemFailures": []}, answer
    assert len(transport.ids) == members
    return transport.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    args = parser.parse_args()
    print(f"Salesforce API calls for {args.members} changed members (token requests shown apart)")
    print(
        f"{'stream batch':>12} {'tier entries':>12} {'upsert':>7} {'owner q':>8} {'task':>5} "
        f"{'API calls':>10} {'token':>6}"
    )
    for batch_size in (100, 200, 1000):
        for share in (0.0, 0.1, 1.0):
            counts = run(args.members, batch_size, share)
            api = counts["upsert"] + counts["owner query"] + counts["task create"]
            print(
                f"{batch_size:>12} {share:>12.0%} {counts['upsert']:>7} {counts['owner query']:>8} "
                f"{counts['task create']:>5} {api:>10} {counts['token']:>6}"
            )


if __name__ == "__main__":
    main()
