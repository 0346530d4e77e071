"""The DynamoDB data model, in one place for the CDK stack and the local stack.

Each table is described by its key schema only (DynamoDB is schemaless beyond keys). The CDK app
builds `aws_dynamodb.Table` objects from these specs and the local stack creates the same tables
on the embedded endpoint, so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    env_var: str
    default_name: str
    partition_key: str
    sort_key: str | None = None
    sort_key_type: str = "S"
    stream: str | None = None
    ttl_attribute: str | None = None
    indexes: tuple[Index, ...] = field(default_factory=tuple)


MEMBERS = TableSpec(
    logical_id="MembersTable",
    env_var="MEMBERS_TABLE",
    default_name="engagement-members",
    partition_key="member_id",
    stream="NEW_AND_OLD_IMAGES",
)

EVENTS = TableSpec(
    logical_id="EventsTable",
    env_var="EVENTS_TABLE",
    default_name="engagement-events",
    partition_key="event_id",
    # by-member: the member an event was stored for; by-account: the account it came from, which is what
    # identity operations follow (an account moved by `identities link` takes its events along).
    indexes=(
        Index(name="by-member", partition_key="member_id", sort_key="occurred_at"),
        Index(name="by-account", partition_key="account", sort_key="occurred_at"),
    ),
)

IDENTITIES = TableSpec(
    logical_id="IdentitiesTable",
    env_var="IDENTITIES_TABLE",
    default_name="engagement-identities",
    partition_key="key",
)

RAW = TableSpec(
    logical_id="RawPayloadsTable",
    env_var="RAW_TABLE",
    default_name="engagement-raw",
    partition_key="event_id",
    sort_key="chunk",
    sort_key_type="N",
    ttl_attribute="expires_at",
)

# CRM outcomes (issue 4): lifecycle stage, plan and closed-won deals that came back from a CRM, per member.
# `outcome_id` is `<crm>:<object type>:<object id>` (`hubspot:deal:123`).
OUTCOMES = TableSpec(
    logical_id="OutcomesTable",
    env_var="OUTCOMES_TABLE",
    default_name="engagement-outcomes",
    partition_key="member_id",
    sort_key="outcome_id",
)

# CRM sync state (issue 4): per member, what each CRM last took (`crm#<crm>`), the tasks and alerts claimed
# for a tier entry (`task#<crm>#<version>`, `alert#<channel>#<version>`), and pull cursors (member `#pull`).
SYNC = TableSpec(
    logical_id="SyncStateTable",
    env_var="SYNC_TABLE",
    default_name="engagement-sync",
    partition_key="member_id",
    sort_key="sync_key",
)

# Poller cursors (issue 3): one item per (platform, stream), e.g. `discord:channel:123`.
CURSORS = TableSpec(
    logical_id="CursorsTable",
    env_var="CURSORS_TABLE",
    default_name="engagement-cursors",
    partition_key="cursor_id",
)

# Identity audit trail (issue 5): append-only, one item per (member, entry). Personal details are sealed with
# the member's own key (`auditkey#<member>` in IDENTITIES), which forgetting the member deletes.
AUDIT = TableSpec(
    logical_id="IdentityAuditTable",
    env_var="AUDIT_TABLE",
    default_name="engagement-audit",
    partition_key="member_id",
    sort_key="entry_id",
)

ALL_TABLES: tuple[TableSpec, ...] = (MEMBERS, EVENTS, IDENTITIES, RAW, OUTCOMES, SYNC, CURSORS, AUDIT)
