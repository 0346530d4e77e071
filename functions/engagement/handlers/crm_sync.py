"""Member table stream -> CRM: exactly-once effect per (member, version), failed records named by sequence number.

The whole batch becomes one list of changes (newest image per member). `deliver` then, for any CRM
adapter with `push(changes) -> PushResult`:
1. reads the CRM's sync state of those members (one BatchGetItem per 100) and drops every change the CRM
   already has (same or newer version): a redelivered batch costs zero CRM calls and never regresses a value;
2. for each tier entry, takes a claim `task#<crm>#<version>` (conditional put) before the push; a member whose
   claim exists is pushed without a task, so a redelivery never creates a second task;
3. pushes the rest in as few calls as the CRM's batch limit allows;
4. per member that landed: completes its task claim, sends the Slack alert once (claim `alert#slack#<version>`),
   and records the synced version (a conditional write that only goes up); per member that failed: gives the
   task claim back so the retry creates the task.
Powertools' batch processor then fails exactly the records of failed members, so Lambda retries from the first
of them and, after the configured retries, hands the batch's stream coordinates to the SQS failure destination
(`engagement crm replay-failures` re-drives them; the scheduled reconcile catches anything else).

Known gap: a task whose create call timed out after HubSpot stored it, or a function that died between the
create and `complete`, leaves a pending claim: the task is then not created again (at most once), and the
claim stays `pending` in the sync table for an operator to see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer

from engagement.adapters.config_source import current_taxonomy
from engagement.adapters.secrets import get_secret
from engagement.domain import scoring
from engagement.domain.crm import MemberChange, Skipped, change_from_images, latest_per_member
from engagement.domain.sync import RECENT_DAYS, due, strongest_actions
from engagement.domain.taxonomy import Taxonomy
from engagement.handlers.errors import NotConfigured
from engagement.observability import logger, metrics
from engagement.settings import HUBSPOT_TOKEN, SLACK_WEBHOOK_URL, Settings

# Every record failed (the CRM is down): answer with all of them rather than raising, so Lambda retries from the
# first and counts the attempt, as it does for a partial failure.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
_deserializer = TypeDeserializer()
_crm: Any = None
_deps: SyncDependencies | None = None


class SyncFailed(Exception):
    """The CRM did not take this member's change; the record is retried."""


def crm_adapter(settings: Settings) -> Any:
    """The configured CRM: HubSpot with its token, Salesforce with its credentials, or the local outbox file."""
    if settings.crm_provider == "salesforce":
        from engagement.adapters.salesforce import salesforce_from_env

        return salesforce_from_env()
    if settings.crm_provider == "hubspot":
        from engagement.adapters.hubspot import HubSpot, RateLimiter

        token = get_secret(HUBSPOT_TOKEN)
        if not token:
            raise NotConfigured("CRM_PROVIDER is hubspot but no HubSpot token is configured (HUBSPOT_TOKEN)")
        return HubSpot(
            token,
            settings.hubspot_base_url,
            limiter=RateLimiter([(settings.hubspot_calls_per_10s, 10.0), (settings.hubspot_calls_per_second, 1.0)]),
            search_limiter=RateLimiter([(settings.hubspot_search_per_second, 1.0)]),
        )
    from engagement.adapters.outbox import Outbox

    return Outbox(settings.outbox_path)


@dataclass
class SyncDependencies:
    """What the sync talks to besides the CRM: the sync state, the events (for task reasons), the alert channel."""

    sync: Any  # adapters.sync_state.SyncStore
    store: Any  # adapters.dynamo.Store
    alerts: Any = None  # adapters.slack.SlackAlerts, or None when no webhook is configured
    taxonomy: Callable[[], Taxonomy] = current_taxonomy
    clock: Callable[[], datetime] = scoring.utc_now


def default_dependencies() -> SyncDependencies:
    from engagement.adapters.sync_state import SyncStore
    from engagement.handlers import ingest

    base = ingest.default_dependencies()
    alerts = None
    url = get_secret(SLACK_WEBHOOK_URL)
    # The deployed secret starts as a generated placeholder: only an https URL is a webhook to call.
    if url and not url.startswith("https://"):
        logger.warning("slack alerts off: SLACK_WEBHOOK_URL is not an https URL (still the placeholder?)")
        url = None
    if url:
        from engagement.adapters.slack import SlackAlerts

        alerts = SlackAlerts(url)
    return SyncDependencies(sync=SyncStore(base.settings, base.store.client), store=base.store, alerts=alerts)


@dataclass
class Delivery:
    pushed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    already_synced: int = 0
    tasks: int = 0
    alerts: int = 0
    calls: int = 0


def crm_name(crm: Any) -> str:
    return str(getattr(crm, "name", type(crm).__name__.lower()))


def reasons_for(store: Any, member_id: str, taxonomy: Taxonomy, now: datetime) -> tuple[str, ...]:
    """The member's strongest recent actions: its accounts' events (merged parts' included), by-account index."""
    since = (now - timedelta(days=RECENT_DAYS)).isoformat()
    return strongest_actions(store.person_events(member_id, since), taxonomy, now)


def deliver(changes: list[MemberChange], crm: Any, deps: SyncDependencies) -> Delivery:
    """Push what the CRM does not have yet, exactly once per (member, version); see the module docstring."""
    delivery = Delivery()
    if not changes:
        return delivery
    name = crm_name(crm)
    now = deps.clock()
    taxonomy = deps.taxonomy()
    states = deps.sync.states(name, [c.member_id for c in changes])

    to_push: list[MemberChange] = []
    task_claims: dict[str, str] = {}
    entries: set[str] = set()
    for change in changes:
        pending = due(change, states[change.member_id], taxonomy)
        if pending is None:
            delivery.already_synced += 1
            continue
        if pending.entered_task_tier:
            entries.add(pending.member_id)
            pending = replace(pending, reasons=reasons_for(deps.store, pending.member_id, taxonomy, now))
            key = f"task#{name}#{pending.version}"
            if deps.sync.claim(pending.member_id, key, now):
                task_claims[pending.member_id] = key
            else:
                pending = replace(pending, entered_task_tier=False)  # the task exists (or is in flight) already
        to_push.append(pending)
    if not to_push:
        return delivery

    result = crm.push(to_push)
    delivery.calls = result.calls
    skipped = getattr(result, "skipped", {}) or {}
    records = getattr(result, "records", {}) or {}
    for change in to_push:
        member_id = change.member_id
        claim = task_claims.get(member_id)
        if member_id in result.failed or (member_id not in result.pushed and member_id not in skipped):
            if claim:
                deps.sync.release(member_id, claim)
            delivery.failed[member_id] = result.failed.get(member_id, "the CRM adapter did not report this member")
            continue
        if member_id in skipped:
            if claim:
                deps.sync.release(member_id, claim)
            logger.info("member not sent to the crm", extra={"member_id": member_id, "reason": skipped[member_id]})
        elif claim:
            deps.sync.complete(member_id, claim, now, records.get(member_id))
            delivery.tasks += 1
        if member_id in entries and deps.alerts is not None and member_id not in skipped:
            sent, problem = _alert_once(change, deps, now)
            if problem:
                delivery.failed[member_id] = problem
                continue
            delivery.alerts += sent
        deps.sync.mark_synced(name, member_id, change.version, change.tier, records.get(member_id), now)
        delivery.pushed.add(member_id)
    return delivery


def _alert_once(change: MemberChange, deps: SyncDependencies, now: datetime) -> tuple[bool, str | None]:
    """Send the tier-entry alert unless it was sent before: (sent now, a reason when it must be retried)."""
    from engagement.adapters.slack import AlertRejected

    key = f"alert#{deps.alerts.name}#{change.version}"
    if not deps.sync.claim(change.member_id, key, now):
        return False, None
    try:
        deps.alerts.send(change)
    except AlertRejected as error:
        # Slack refused the message itself (bad URL, archived channel): retrying cannot help, and the CRM
        # update must not wait on it. Logged, counted and recorded on the claim.
        logger.error("alert refused", extra={"member_id": change.member_id, "reason": str(error)})
        metrics.add_metric(name="AlertsRefused", unit="Count", value=1)
        deps.sync.complete(change.member_id, key, now, f"refused: {error}")
        return False, None
    except Exception as error:
        deps.sync.release(change.member_id, key)
        return False, f"alert failed and will be retried: {error}"
    deps.sync.complete(change.member_id, key, now)
    return True, None


def _image(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    image = (record.get("dynamodb") or {}).get(name)
    return {k: _deserializer.deserialize(v) for k, v in image.items()} if image else None


def changes_of(records: list[dict[str, Any]], taxonomy: Taxonomy) -> list[MemberChange]:
    """The newest change per member in a batch of stream records (skips logged)."""
    changes: list[MemberChange] = []
    for record in records:
        outcome = change_from_images(_image(record, "OldImage"), _image(record, "NewImage"), taxonomy)
        if isinstance(outcome, Skipped):
            logger.info("member not pushed", extra={"member_id": outcome.member_id, "reason": outcome.reason})
        elif outcome is not None:
            changes.append(outcome)
    return latest_per_member(changes, taxonomy)


def sync(event: dict[str, Any], context: Any, crm: Any, deps: SyncDependencies) -> dict[str, Any]:
    """Deliver the batch's changes through `crm` and build the partial batch response."""
    latest = changes_of(event.get("Records", []), deps.taxonomy())
    delivery = deliver(latest, crm, deps)
    if latest:
        logger.info(
            "crm push",
            extra={
                "members": len(latest),
                "pushed": len(delivery.pushed),
                "failed": len(delivery.failed),
                "already_synced": delivery.already_synced,
                "tasks": delivery.tasks,
                "alerts": delivery.alerts,
                "calls": delivery.calls,
            },
        )
        metrics.add_metric(name="CrmUpdates", unit="Count", value=len(delivery.pushed))
        metrics.add_metric(name="CrmFailures", unit="Count", value=len(delivery.failed))
        metrics.add_metric(name="CrmCalls", unit="Count", value=delivery.calls)
    failed = delivery.failed
    if failed:
        # The reason per member (e.g. Salesforce's DUPLICATES_DETECTED), which the failure queue does not carry.
        logger.warning("crm push failures", extra={"reasons": dict(list(failed.items())[:50])})

    def record_handler(record: DynamoDBRecord) -> None:
        keys = (record.raw_event.get("dynamodb") or {}).get("Keys") or {}
        member_id = (keys.get("member_id") or {}).get("S")
        if member_id in failed:
            raise SyncFailed(f"member {member_id}: {failed[member_id]}")

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _crm, _deps
    _crm = _crm or crm_adapter(Settings.from_env())
    _deps = _deps or default_dependencies()
    return sync(event, context, _crm, _deps)
