"""`engagement crm ...` as an engineer uses it."""

from __future__ import annotations

import json

import boto3
import stamina

from engagement.adapters.dynamo import Store
from engagement.adapters.sync_state import SyncStore
from engagement.handlers import crm_sync
from engagement.local import cli_crm
from engagement.local.stack import StreamPump, home
from engagement.settings import Settings
from tests.hubspot_fake import FakeHubSpot
from tests.integration.test_cli import run
from tests.integration.test_crm_exactly_once import hubspot, member_item, put_members


def test_setup_without_a_token_says_what_to_set(tmp_path):
    result = run(["crm", "setup"], tmp_path)
    assert result.returncode == 2 and "HUBSPOT_TOKEN" in result.stderr


def test_reconcile_without_a_running_stack_says_how_to_start_one(tmp_path):
    result = run(["crm", "reconcile"], tmp_path)
    assert result.returncode == 2 and "engagement serve" in result.stderr


def test_replay_of_the_local_failures_file_pushes_current_state_and_empties_it(stack, clock):
    stamina.set_testing(True, attempts=2)
    try:
        client = boto3.client("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1")
        settings = Settings.from_env()
        deps = crm_sync.SyncDependencies(sync=SyncStore(settings, client), store=Store(settings, client), clock=clock)
        fake = FakeHubSpot(down=True)
        crm = hubspot(fake)
        put_members(client, [member_item(i) for i in range(3)])
        StreamPump(stack, lambda e, c: crm_sync.sync(e, c, crm, deps), retries=0).drain()
        failures = home() / "failures.jsonl"
        assert len(failures.read_text().splitlines()) == 3

        fake.down = False
        assert cli_crm.replay_local(crm, deps) == 0
        assert not failures.exists()
        assert sorted(fake.contacts) == [f"user{i}@example.com" for i in range(3)]
        assert json.loads(json.dumps(sorted(fake.upserts.values()))) == [1, 1, 1]
    finally:
        stamina.set_testing(False)
