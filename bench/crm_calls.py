"""CRM API calls per 1,000 changed members, through the real sync path (`crm_sync.deliver`).

Members change in stream batches of 100 (the event source's batch size); each batch goes through the
exactly-once sync (sync state in DynamoDB on an embedded moto server) to an adapter whose HTTP
transport is a mock answering in the vendor's documented shapes (tests/hubspot_fake.py for HubSpot).
Scenarios:

- fresh: every member changed, a share of them entering a task tier (owner read + task create);
- redelivered: the same batches again (what a stream retry does): should cost 0 calls;
- 429 storm: the vendor answers every 5th call 429 once (each costs one retry);
- reconcile after an outage: the same 1,000 members pushed by the reconcile job instead of the stream.

Calls are counted at the transport. The client-side rate limiter runs on a virtual clock, so the
script also reports how long the calls would take at the vendor's limits without sleeping.

    .venv/bin/python bench/crm_calls.py [--members 1000] [--task-share 0.05] [--crm hubspot]

Salesforce: `--crm salesforce` needs a factory in `ADAPTERS` building the Salesforce adapter on an
httpx mock transport (the issue4-salesforce branch); until it lands the script says so and stops.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(
    {
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }
)


def hubspot_adapter(faults: dict[int, Any]) -> tuple[Any, Any, Any]:
    """(adapter, fake vendor, virtual clock) for HubSpot."""
    import httpx

    from engagement.adapters.hubspot import HubSpot, RateLimiter
    from tests.hubspot_fake import FakeHubSpot, FakeTime

    fake = FakeHubSpot(faults=faults)
    clock = FakeTime()
    crm = HubSpot(
        "pat-bench",
        "https://api.hubapi.test",
        client=httpx.Client(transport=httpx.MockTransport(fake)),
        limiter=RateLimiter([(100, 10.0), (10, 1.0)], clock=clock, sleep=clock.sleep),
    )
    return crm, fake, clock


def salesforce_adapter(faults: dict[int, Any]) -> tuple[Any, Any, Any]:
    # Hook for the issue4-salesforce branch: build its adapter on an httpx.MockTransport answering
    # sObject Collections upserts (200 with per-item results) and return (adapter, fake, clock) where
    # `fake.requests` lists the requests made and `clock.now` is the virtual time.
    raise SystemExit("the Salesforce adapter is not on this branch yet: add its factory to bench/crm_calls.py ADAPTERS")


ADAPTERS: dict[str, Callable[[dict[int, Any]], tuple[Any, Any, Any]]] = {
    "hubspot": hubspot_adapter,
    "salesforce": salesforce_adapter,
}


def changes(count: int, task_share: float, version: int) -> list[Any]:
    from engagement.domain.crm import MemberChange

    # Tier entries spread evenly over the batches (the worst case: every batch then needs its own owner read
    # and task create), rather than packed into one.
    every = max(1, round(1 / task_share)) if task_share > 0 else 0

    def entering(i: int) -> bool:
        return every > 0 and i % every == 0

    return [
        MemberChange(
            member_id=f"bench-{i:05d}",
            email=f"member{i}@example.com",
            name=f"member {i}",
            score=90.0 if entering(i) else 40.0,
            tier="Power User" if entering(i) else "Active",
            previous_tier="Active" if entering(i) else "Casual",
            tier_changed_at="2026-12-01T12:00:00+00:00",
            last_activity_at="2026-12-01T11:00:00+00:00",
            version=version,
            entered_task_tier=entering(i),
        )
        for i in range(count)
    ]


def run(crm_name: str, members: int, task_share: float) -> None:
    import logging

    import boto3
    import stamina

    from engagement.adapters.dynamo import Store, to_item
    from engagement.adapters.sync_state import SyncStore
    from engagement.handlers import crm_reconcile, crm_sync
    from engagement.local.stack import LocalStack
    from engagement.settings import Settings

    logging.getLogger("stamina").setLevel(logging.ERROR)
    stamina.set_testing(True, attempts=6)  # retries without real waits; the limiter's clock is virtual
    stack = LocalStack().start(prefer_running=False)
    try:
        client = boto3.client("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1")
        settings = Settings.from_env()

        def fresh_deps() -> Any:
            for table in (settings.sync_table, settings.members_table):
                client.delete_table(TableName=table)
            stack.ensure_tables()
            return crm_sync.SyncDependencies(sync=SyncStore(settings, client), store=Store(settings, client))

        def through_stream(crm: Any, deps: Any, batch: list[Any]) -> None:
            for start in range(0, len(batch), 100):
                crm_sync.deliver(batch[start : start + 100], crm, deps)

        rows = []
        deps = fresh_deps()
        crm, fake, clock = ADAPTERS[crm_name]({})
        batch = changes(members, task_share, version=1)
        through_stream(crm, deps, batch)
        fresh = len(fake.requests)
        rows.append(("fresh changes", fresh, clock.now - 1000.0))
        through_stream(crm, deps, batch)
        rows.append(("same batches redelivered", len(fake.requests) - fresh, 0.0))

        deps = fresh_deps()
        crm, fake, clock = ADAPTERS[crm_name]({i: _rate_limited() for i in range(0, 40, 5)})
        through_stream(crm, deps, batch)
        rows.append(("429 once on calls 1, 6, 11, ... 36", len(fake.requests), clock.now - 1000.0))

        deps = fresh_deps()
        crm, fake, clock = ADAPTERS[crm_name]({})
        for change in batch:
            item = {
                "member_id": change.member_id,
                "email": change.email,
                "name": change.name,
                "score": change.score,
                "tier": change.tier,
                "version": change.version,
                "event_count": 3,
            }
            client.put_item(TableName=settings.members_table, Item=to_item({**item, "score": _decimal(change.score)}))
        summary = crm_reconcile.reconcile(crm, deps)
        rows.append(("reconcile after an outage", summary.calls, clock.now - 1000.0))
        rows.append(("reconcile again (nothing behind)", crm_reconcile.reconcile(crm, deps).calls, 0.0))
    finally:
        stack.stop()

    per = 1000 / members
    print(f"{crm_name}: {members} changed members, {task_share:.0%} entering a task tier")
    print(f"{'scenario':38} {'calls':>7} {'per 1,000':>10} {'time at limits':>15}")
    for name, calls, seconds in rows:
        print(f"{name:38} {calls:7d} {calls * per:10.1f} {seconds:14.1f}s")


def _rate_limited() -> Any:
    from tests.hubspot_fake import rate_limited

    return rate_limited()


def _decimal(value: float) -> Any:
    from decimal import Decimal

    return Decimal(str(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--task-share", type=float, default=0.05)
    parser.add_argument("--crm", choices=sorted(ADAPTERS), default="hubspot")
    args = parser.parse_args()
    run(args.crm, args.members, args.task_share)


if __name__ == "__main__":
    main()
