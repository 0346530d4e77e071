"""DynamoDB grants shared by several functions, written once: what storing an event needs, wherever it came from.

TransactWriteItems has no IAM action of its own: each item inside it is authorized as PutItem, UpdateItem,
DeleteItem or ConditionCheckItem on its own table. tests/infra/test_iam_covers_calls.py drives each function's
code against a real endpoint and checks every call it makes against the synthesized role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engagement import tables
from engagement.tables import TableSpec


def grant_store_events(function: Any, arn: Callable[[TableSpec], str], *, withdraws: bool = False) -> None:
    """What engagement.adapters.dynamo.Store needs to resolve an account and record an event.

    - members: read; put a new member; update its score (the record transaction) and, for an automatic merge,
      read both in one batch and check the parts of a merged member in the refresh transaction;
    - identities: look up and conditionally put keys (accounts, emails, SSO subjects, a member's audit key), and
      update an account's ledger in the record transaction;
    - events: conditional put (the dedup), read, and, for sources that delete, mark one withdrawn;
    - audit log: append an entry when a rule links or merges;
    - raw bodies: batch write only.
    """
    function.allow(
        "ReadWriteMembers",
        [
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:ConditionCheckItem",
        ],
        [arn(tables.MEMBERS)],
    )
    function.allow(
        "ReadWriteIdentities", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], [arn(tables.IDENTITIES)]
    )
    function.allow(
        "ReadPutEvents",
        ["dynamodb:GetItem", "dynamodb:PutItem", *(["dynamodb:UpdateItem"] if withdraws else [])],
        [arn(tables.EVENTS)],
    )
    function.allow("AppendIdentityAudit", ["dynamodb:PutItem"], [arn(tables.AUDIT)])
    function.allow("StoreRawBody", ["dynamodb:BatchWriteItem"], [arn(tables.RAW)])
