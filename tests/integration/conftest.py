"""Fixtures shared by the CRM integration tests: a DynamoDB client on the moto stack, the CRM sync's dependencies,
and stamina's retries without their waits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def no_backoff_waits() -> Iterator[None]:
    """Retries still happen (up to 6 attempts) but never sleep; a module opts in with `pytestmark` or autouse."""
    import stamina

    stamina.set_testing(True, attempts=6)
    yield
    stamina.set_testing(False)


@pytest.fixture
def client(stack: Any) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1")


@pytest.fixture
def sync_deps(client: Any, clock: Any) -> Any:
    from engagement.adapters.dynamo import Store
    from engagement.adapters.sync_state import SyncStore
    from engagement.handlers import crm_sync
    from engagement.settings import Settings

    settings = Settings.from_env()
    return crm_sync.SyncDependencies(sync=SyncStore(settings, client), store=Store(settings, client), clock=clock)
