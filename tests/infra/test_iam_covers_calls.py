"""Every DynamoDB call a function makes is allowed by that function's role in the synthesized template.

The least-privilege tests elsewhere check what a role holds against a list written by hand; this one checks it
against what the code does. Each scenario drives a function's real code path against the moto endpoint (merges,
automatic links, withdrawals, unmerges, forgetting, the stream sync and the reconcile) while a spy on botocore
writes down every DynamoDB request as the IAM actions AWS authorizes it by: a TransactWriteItems needs PutItem,
UpdateItem, DeleteItem or ConditionCheckItem on each item's table, a Query on an index needs the index's ARN.
A call the role does not allow would be an AccessDenied in AWS, a failed delivery or a lost merge.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient

from engagement import tables
from engagement.domain.taxonomy import build

HANDLERS = {
    "github": "engagement.handlers.github_webhook.lambda_handler",
    "discourse": "engagement.handlers.discourse_webhook.lambda_handler",
    "slack": "engagement.handlers.slack_webhook.lambda_handler",
    "discord": "engagement.handlers.discord_webhook.lambda_handler",
    "bevy": "engagement.handlers.bevy_webhook.lambda_handler",
    "events": "engagement.handlers.events_endpoint.lambda_handler",
    "admin": "engagement.handlers.identity_admin.lambda_handler",
    "recalc": "engagement.handlers.recalc.lambda_handler",
    "crm_sync": "engagement.handlers.crm_sync.lambda_handler",
    "reconcile": "engagement.handlers.crm_reconcile.lambda_handler",
}
POLLER_HANDLERS = {
    "discord": "engagement.handlers.discord_poller.lambda_handler",
    "circle": "engagement.handlers.circle_poller.lambda_handler",
    "meetup": "engagement.handlers.meetup_poller.lambda_handler",
}
# Storing an event is the same Store code whichever platform or poller it came from.
INGEST = ("github", "discourse", "slack", "discord", "bevy", "events")
TABLE_IDS = {spec.default_name: spec.logical_id for spec in tables.ALL_TABLES}
TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}

Need = tuple[str, str, str | None]  # (action, table logical id, index name or None)


class Spy:
    """Writes down the IAM actions of each DynamoDB request made while a tag is set."""

    def __init__(self) -> None:
        self.tag: str | None = None
        self.needs: dict[str, set[Need]] = defaultdict(set)

    def add(self, operation: str, params: dict[str, Any]) -> None:
        if self.tag is None:
            return
        found = self.needs[self.tag]
        if operation == "TransactWriteItems":
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                found.add((TRANSACT_ACTIONS[kind], TABLE_IDS[body["TableName"]], None))
        elif operation == "TransactGetItems":
            for item in params["TransactItems"]:
                found.add(("dynamodb:GetItem", TABLE_IDS[item["Get"]["TableName"]], None))
        elif operation in ("BatchGetItem", "BatchWriteItem"):
            for name in params["RequestItems"]:
                found.add((f"dynamodb:{operation}", TABLE_IDS[name], None))
        else:
            found.add((f"dynamodb:{operation}", TABLE_IDS[params["TableName"]], params.get("IndexName")))

    @contextmanager
    def during(self, tag: str) -> Iterator[None]:
        self.tag = tag
        try:
            yield
        finally:
            self.tag = None


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    spy = Spy()
    original = BaseClient._make_api_call

    def recording(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb":
            spy.add(operation, params)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    yield spy


# The template side ---------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource(value: Any) -> tuple[str, str | None] | None:
    """(table logical id, index name, or '*' for every index) of a table or index ARN in the template."""
    if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
        return value["Fn::GetAtt"][0], None
    if isinstance(value, dict) and "Fn::Join" in value:
        parts = value["Fn::Join"][1]
        if len(parts) == 2 and isinstance(parts[1], str) and parts[1].startswith("/index/"):
            table = _resource(parts[0])
            if table is not None:
                return table[0], parts[1].removeprefix("/index/")
    return None


def allowed(template: dict[str, Any], handler: str) -> set[Need]:
    resources = template["Resources"]
    (function,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == handler
    ]
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    grants: set[Need] = set()
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in resource["Properties"]["Roles"]:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            for target in _as_list(statement["Resource"]):
                found = _resource(target)
                if found is None:
                    continue
                for action in _as_list(statement["Action"]):
                    grants.add((action, found[0], found[1]))
    return grants


def missing(needs: set[Need], grants: set[Need]) -> list[Need]:
    def covered(need: Need) -> bool:
        action, table, index = need
        return (action, table, index) in grants or (index is not None and (action, table, "*") in grants)

    return sorted(need for need in needs if not covered(need))


@pytest.fixture(scope="module")
def community(community_template_file: Path) -> dict[str, Any]:
    """Every webhook platform and the admin API, with HubSpot as the CRM."""
    return json.loads(community_template_file.read_text())


@pytest.fixture(scope="module")
def pollers(pollers_template_file: Path) -> dict[str, Any]:
    return json.loads(pollers_template_file.read_text())


# The code side: one community's life, function by function --------------------------------------------------------


@pytest.fixture
def observed(spy: Spy, deps: Any, clock: Any, stack: Any, context: Any, monkeypatch: pytest.MonkeyPatch, tmp_path):
    from engagement.adapters.outbox import Outbox
    from engagement.adapters.outcomes import OutcomeStore
    from engagement.adapters.sync_state import SyncStore
    from engagement.domain.activity import Account
    from engagement.domain.outcomes import Outcome
    from engagement.handlers import crm_reconcile, crm_sync, identity_admin, ingest, recalc
    from engagement.local.stack import StreamPump
    from tests.conftest import SECRET, github_push
    from tests.integration import test_identity as people
    from tests.integration import test_identity_admin as admin_api

    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    # Every tier above Lurker makes a CRM task, so the sync reads the events behind a promotion.
    taxonomy = build(
        {
            "task_tiers": ["Casual", "Active", "Power User", "Champion"],
            "identity": {"auto_merge_rules": ["same_handle"]},
        }
    )
    deps.taxonomy = lambda: taxonomy

    # Webhooks: a first sighting, automatic links and an automatic merge, a duplicate, a Slack message withdrawn.
    with spy.during("github"):
        people.github(deps, "pull_request", people.pull_request(1, "octo-ana", 901, people.iso(clock, 10)))
        people.github(deps, "pull_request", people.pull_request(1, "octo-ana", 901, people.iso(clock, 10)))
        people.github(deps, "pull_request", people.pull_request(2, "bo-dev", 902, people.iso(clock, 40)))
    with spy.during("discourse"):
        user = {"user": {"id": 31, "username": "ana", "email": "ana@example.com"}}
        people.discourse(deps, "user_created", "user", user)
        people.discourse(deps, "post_created", "post", people.discourse_answer(1, 31, "ana", people.iso(clock, 2)))
        # the same handle as Bo's GitHub login: an operator-enabled rule merges it at the next recalc
        bo_forum = {"user": {"id": 32, "username": "bo-dev", "email": "bo@example.org"}}
        people.discourse(deps, "user_created", "user", bo_forum)
    with spy.during("github"):
        people.github(deps, "push", github_push("octo-ana", 901, "ana@example.com"))  # merges Ana's two members
    with spy.during("slack"):
        people.slack(deps, clock, people.slack_join("U0ANA", "ana@example.com", "Ana Lima"))
        message = {
            "team_id": "T0AURORA",
            "type": "event_callback",
            "event_id": "EvMsg1",
            "event_time": 1796040000,
            "event": {
                "type": "message",
                "channel": "C0GENERAL",
                "user": "U0ANA",
                "text": "hi",
                "ts": "1796040000.000100",
            },
        }
        people.slack(deps, clock, message)
        deletion = {
            **message,
            "event_id": "EvDel1",
            "event": {
                "type": "message",
                "subtype": "message_deleted",
                "hidden": True,
                "channel": "C0GENERAL",
                "deleted_ts": "1796040000.000100",
                "ts": "1796040100.000200",
                "previous_message": {"type": "message", "user": "U0ANA", "ts": "1796040000.000100"},
            },
        }
        people.slack(deps, clock, deletion)
    with spy.during("ingest"):  # the SSO rule, reached by Circle and /events accounts
        deps.store.resolve(Account("circle", "c1", "ana", sso_subject="auth0|ana"), clock.now, taxonomy.identity)
        deps.store.resolve(Account("events", "form/1", "ana", sso_subject="auth0|ana"), clock.now, taxonomy.identity)
        deps.store.resolve(Account("slack", "U0ANA", "ana", sso_subject="auth0|ana"), clock.now, taxonomy.identity)

    # The scheduled recalc, with the same-handle rule enabled: it merges Bo's forum account into his GitHub one.
    monkeypatch.setattr(recalc, "current_taxonomy", lambda: taxonomy)
    monkeypatch.setattr(ingest, "default_dependencies", lambda: deps)
    with spy.during("recalc"):
        recalc.lambda_handler({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, context)
    bo = deps.store.root_of(deps.store.member_for_key("account#github:902"))
    assert deps.store.root_of(deps.store.member_for_key("account#discourse:forum.example.com/32")) == bo

    # The stream's CRM sync and the hourly reconcile, through the outbox CRM.
    outbox = Outbox(str(tmp_path / "outbox.jsonl"))
    sync_deps = crm_sync.SyncDependencies(
        sync=SyncStore(deps.settings, deps.store.client), store=deps.store, clock=clock, taxonomy=lambda: taxonomy
    )
    stream = StreamPump(stack, lambda event, ctx: crm_sync.sync(event, ctx, outbox, sync_deps))
    with spy.during("crm_sync"):
        stream.drain()
    # Bo (Casual, a member with a merged part) opens a pull request: Active, a task tier, so the next batch reads
    # the events of his whole person for the task's reasons.
    with spy.during("github"):
        people.github(deps, "pull_request", people.pull_request(3, "bo-dev", 902, people.iso(clock, 1)))
    assert deps.store.get_member(bo)["tier"] == "Active"
    with spy.during("crm_sync"):
        stream.drain()
    assert any(json.loads(line).get("task") for line in (tmp_path / "outbox.jsonl").read_text().splitlines())
    with spy.during("reconcile"):
        crm_reconcile.reconcile(outbox, sync_deps)

    # The admin API: show, history, link, unlink, merge, unmerge, suggestions, forget.
    monkeypatch.setenv("ADMIN_API_TOKEN", admin_api.TOKEN)
    monkeypatch.setattr(
        identity_admin,
        "_deps",
        identity_admin.AdminDependencies(store=deps.store, clock=clock, taxonomy=lambda: taxonomy, crm=lambda: outbox),
    )
    ana = deps.store.root_of(deps.store.member_for_key("account#github:901"))
    OutcomeStore(deps.settings, deps.store.client).put_outcomes(
        [Outcome(ana, "hubspot", "contact", "501", "status", "2026-11-30T00:00:00Z", lifecycle_stage="customer")]
    )
    with spy.during("admin"):
        calls = [
            ("GET", f"/admin/members/{ana}", None),
            ("GET", f"/admin/members/{ana}/history", None),
            ("POST", "/admin/identities/unlink", {"member": ana, "identity": "slack:U0ANA"}),
            ("POST", "/admin/identities/link", {"member": ana, "identity": "slack:U0ANA"}),
            ("POST", "/admin/members/merge", {"member": bo, "into": ana, "why": "test"}),
            ("POST", "/admin/members/unmerge", {"member": bo}),
            ("GET", "/admin/identities/suggestions", None),
            ("POST", "/admin/forget", {"identity": "email:ana@example.com"}),
        ]
        for method, path, body in calls:
            status, answer = admin_api.call(context, method, path, body)
            assert status == 200, (method, path, answer)
    return spy.needs


def test_the_scenario_exercised_every_function(observed: dict[str, set[Need]]) -> None:
    # A scenario that silently stopped making calls would make every check below pass vacuously.
    for tag in ("github", "discourse", "slack", "ingest", "recalc", "crm_sync", "reconcile", "admin"):
        assert observed[tag], tag
    # and the paths this test exists for were taken:
    assert any(action == "dynamodb:ConditionCheckItem" for action, _, _ in observed["github"])
    assert ("dynamodb:PutItem", tables.AUDIT.logical_id, None) in observed["recalc"]
    assert ("dynamodb:Query", tables.EVENTS.logical_id, "by-account") in observed["admin"]
    assert ("dynamodb:DeleteItem", tables.OUTCOMES.logical_id, None) in observed["admin"]
    assert ("dynamodb:Query", tables.EVENTS.logical_id, "by-account") in observed["crm_sync"]


def test_each_function_may_make_every_call_its_code_makes(observed, community, pollers) -> None:
    # One scenario run (it is the slow part) checked against every function's role; the answer names what is missing.
    stored = observed["github"] | observed["discourse"] | observed["ingest"]
    needs = {
        **{f: observed[f] | (observed["ingest"] if f in INGEST else set()) for f in ("github", "discourse", "slack")},
        **{f: observed[f] for f in ("recalc", "crm_sync", "reconcile", "admin")},
        # the other webhooks store events as GitHub and Discourse do
        **{f: stored for f in ("discord", "bevy", "events")},
    }
    found = {f: missing(n, allowed(community, HANDLERS[f])) for f, n in needs.items()}
    found |= {f"{p}-poller": missing(stored, allowed(pollers, h)) for p, h in POLLER_HANDLERS.items()}

    assert found == {f: [] for f in found}
