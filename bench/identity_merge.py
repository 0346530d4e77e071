"""What a merge and an unmerge cost as the members' histories grow: DynamoDB requests and time.

Two members are given N events each (written straight into the tables the way `Store.record` writes them:
the event item, the member's and the account's accumulators), then merged and unmerged through
`IdentityStore`, on an embedded moto server. Requests are counted by operation at the boto3 client, so
the figures say what DynamoDB would be asked, whatever moto's speed; times are reported as a ratio to the
smallest history in the same run (moto is slower than DynamoDB, the ratio is what carries over).

    .venv/bin/python bench/identity_merge.py [--sizes 10,1000,5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
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


def seed(store: Any, account: Any, events: int, now: datetime) -> str:
    """A member with one account and `events` pull requests: the event items, and the member's and the
    account's accumulators holding their sum (what `Store.record` would have added one by one)."""
    from engagement.adapters.dynamo import to_item
    from engagement.domain import scoring
    from engagement.domain.identity import account_key
    from engagement.domain.taxonomy import build

    taxonomy = build()
    member_id = store.resolve(account, now, taxonomy.identity)
    action = taxonomy.actions["submit_pr"]
    totals: dict[str, float] = {}
    items = []
    for i in range(events):
        occurred = now - timedelta(hours=i)
        name, term = scoring.contribution(action.points, action.half_life_seconds, occurred)
        totals[name] = totals.get(name, 0.0) + term
        items.append(
            {
                "event_id": f"bench:{account.key}:{i}",
                "member_id": member_id,
                "account": account.key,
                "action": "submit_pr",
                "occurred_at": occurred.isoformat(),
                "points": scoring.as_decimal(action.points),
                "half_life_seconds": action.half_life_seconds,
            }
        )
    for start in range(0, len(items), 25):
        chunk = [{"PutRequest": {"Item": to_item(item)}} for item in items[start : start + 25]]
        store.client.batch_write_item(RequestItems={store.settings.events_table: chunk})
    names = {f"#a{i}": name for i, name in enumerate(totals)}
    values = {f":t{i}": scoring.as_decimal(v) for i, v in enumerate(totals.values())} | {":n": events}
    expression = "ADD event_count :n, " + ", ".join(f"#a{i} :t{i}" for i in range(len(totals)))
    for table, key in (
        (store.settings.members_table, {"member_id": member_id}),
        (store.settings.identities_table, {"key": account_key(account.key)}),
    ):
        store.client.update_item(
            TableName=table,
            Key=to_item(key),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )
    store.refresh(member_id, now, taxonomy)
    return member_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000,5000", help="events per member, comma-separated")
    sizes = [int(x) for x in parser.parse_args().sizes.split(",")]

    import boto3

    from engagement.adapters.dynamo import Store
    from engagement.adapters.identity_store import IdentityStore
    from engagement.domain.activity import Account
    from engagement.domain.taxonomy import build
    from engagement.local.stack import LocalStack
    from engagement.settings import Settings

    stack = LocalStack().start(prefer_running=False)
    counts: Counter[str] = Counter()

    def count(params: Any, model: Any, **_: Any) -> None:
        counts[model.name] += 1

    client = boto3.client("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1")
    client.meta.events.register("provide-client-params.dynamodb.*", count)
    store = Store(Settings.from_env(), client)
    people = IdentityStore(store)
    taxonomy = build()
    now = datetime.now(UTC)
    rows = []
    try:
        for n in sizes:
            a = seed(store, Account("github", f"a{n}", f"ana{n}"), n, now)
            b = seed(store, Account("github", f"b{n}", f"bo{n}"), n, now)
            counts.clear()
            start = time.perf_counter()
            people.merge(b, a, "operator:bench", now, taxonomy)
            merge_time, merge_calls = time.perf_counter() - start, sum(counts.values())
            merge_ops = dict(counts)
            counts.clear()
            start = time.perf_counter()
            people.unmerge(b, "operator:bench", now, taxonomy)
            unmerge_time, unmerge_calls = time.perf_counter() - start, sum(counts.values())
            rows.append((n, merge_calls, merge_time, unmerge_calls, unmerge_time, merge_ops))
    finally:
        stack.stop()

    base_merge, base_unmerge = rows[0][2], rows[0][4]
    print(f"{'events/member':>14} {'merge reqs':>10} {'merge x':>8} {'unmerge reqs':>12} {'unmerge x':>9}")
    for n, mc, mt, uc, ut, _ops in rows:
        print(f"{n:>14} {mc:>10} {mt / base_merge:>8.2f} {uc:>12} {ut / base_unmerge:>9.2f}")
    print("merge requests by operation (largest history):", rows[-1][5])


if __name__ == "__main__":
    main()
