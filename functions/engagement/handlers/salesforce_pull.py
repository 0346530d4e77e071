"""Scheduled Salesforce pull: records changed since the last run come back as member outcomes.

Two SOQL queries per run, each paged through `nextRecordsUrl`: Contacts (or Leads) changed since the
high-water mark, with their status, and closed-won Opportunities changed since it, with amount and close
date. Each record is linked to a community member by the external id we push, or else by email; a
contact linked by email gets the external id stamped on it, so the next upsert updates it instead of
creating a duplicate. The mark (the newest `LastModifiedDate` seen, less a small overlap on the next
run) is stored only after the outcomes are written, so a failed run is simply repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.adapters.dynamo import Store
from engagement.adapters.outcomes import OutcomeStore
from engagement.domain import salesforce as sf
from engagement.domain.outcomes import Outcome, OutcomeError
from engagement.domain.scoring import utc_now
from engagement.observability import logger, metrics
from engagement.settings import SALESFORCE_CREDENTIALS, SECRET_ARN_SUFFIX, SalesforceSettings

CURSOR = "salesforce:outcomes"
# Records committed while the previous run was reading can carry a LastModifiedDate just before its mark;
# re-reading a few minutes costs nothing (outcome writes are idempotent) and misses none of them.
OVERLAP = timedelta(minutes=5)
_crm: Any = None  # kept across warm invocations, with its access token


class NotAScheduledEvent(ValueError):
    """The function was invoked with something other than EventBridge's scheduled event."""


@dataclass
class PullSummary:
    status: str = "pulled"
    since: str | None = None
    people: int = 0
    opportunities: int = 0
    outcomes: int = 0
    linked_by_external_id: int = 0
    linked_by_email: int = 0
    unlinked: int = 0
    skipped: int = 0
    stamped: int = 0
    high_water_mark: str | None = None
    calls: int = 0
    unlinked_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        values = self.__dict__.copy()
        values["unlinked_ids"] = values["unlinked_ids"][:20]
        return values


class Linker:
    """Salesforce person record -> member id: by our external id, else by email (stamping ours on the record)."""

    def __init__(self, store: Store, settings: SalesforceSettings, summary: PullSummary) -> None:
        self.store = store
        self.settings = settings
        self.summary = summary
        self.by_record: dict[str, str] = {}
        self.stamps: list[dict[str, Any]] = []

    def link(self, record: dict[str, Any]) -> str | None:
        record_id = str(record.get("Id") or "")
        if record_id in self.by_record:
            return self.by_record[record_id]
        ext = str(record.get(self.settings.external_id_field) or "").strip()
        member_id = self._by_external_id(ext) if ext else None
        if member_id:
            self.summary.linked_by_external_id += 1
        else:
            email = str(record.get("Email") or "").strip().lower()
            member_id = self.store.member_for_key(f"email#{email}") if email else None
            if member_id:
                self.summary.linked_by_email += 1
                wanted = member_id if self.settings.external_id_source == "member_id" else email
                if ext != wanted and sf.is_record_id(record_id):
                    self.stamps.append(
                        {
                            "attributes": {"type": _type_of(record, self.settings.sobject)},
                            "Id": record_id,
                            self.settings.external_id_field: wanted,
                        }
                    )
        if member_id is None:
            self.summary.unlinked += 1
            self.summary.unlinked_ids.append(record_id)
            return None
        self.by_record[record_id] = member_id
        return member_id

    def _by_external_id(self, value: str) -> str | None:
        if self.settings.external_id_source == "email":
            return self.store.member_for_key(f"email#{value.lower()}")
        return value if self.store.get_member(value) else None


def _type_of(record: dict[str, Any], default: str) -> str:
    attributes = record.get("attributes")
    return str(attributes.get("type")) if isinstance(attributes, dict) and attributes.get("type") else default


def pull(
    crm: Any, store: Store, outcomes: OutcomeStore, cursors: Any, settings: SalesforceSettings, now: datetime
) -> PullSummary:
    """One pull: query, link, write outcomes, stamp external ids, then advance the high-water mark.

    `cursors` keeps the mark (the sync-state store: member `#pull`, key `salesforce:outcomes`).
    """
    summary = PullSummary()
    calls_before = crm.calls
    mark = cursors.cursor(CURSOR)
    mark_time = sf.salesforce_time(mark) if mark else None
    since = mark_time - OVERLAP if mark_time else now - timedelta(days=settings.pull_initial_days)
    summary.since = sf.iso_utc(since)
    newest = mark_time
    linker = Linker(store, settings, summary)
    found: list[Outcome] = []

    def keep(build: Any, record: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        """Add the outcome `build(record, ...)` makes; a record with an unusable value is logged and skipped."""
        try:
            found.append(build(record, *args, **kwargs))
        except OutcomeError as error:
            summary.skipped += 1
            logger.warning("salesforce record skipped", extra={"record_id": record.get("Id"), "reason": str(error)})

    def seen(record: dict[str, Any]) -> None:
        nonlocal newest
        modified = sf.salesforce_time(record.get("LastModifiedDate"))
        if modified and (newest is None or modified > newest):
            newest = modified

    fields = [settings.external_id_field, settings.status_field]
    if settings.sobject == "Contact":
        fields.append("AccountId")
    if settings.plan_field:
        fields.append(settings.plan_field)
    for record in crm.query(sf.people_query(settings.sobject, fields, since)):
        summary.people += 1
        seen(record)
        member_id = linker.link(record)
        if member_id:
            keep(
                sf.status_outcome,
                record,
                member_id,
                sobject=settings.sobject,
                status_field=settings.status_field,
                plan_field=settings.plan_field,
            )

    opportunities = crm.query(sf.won_opportunities_query(since, settings.currency_field))
    summary.opportunities = len(opportunities)
    for record in opportunities:
        seen(record)
    contacts = _contacts_for(crm, opportunities, linker, settings)
    for record in opportunities:
        contact_id = record.get("ContactId")
        if contact_id and contact_id in contacts:
            targets = [(contacts[contact_id], contact_id)]
        else:
            # No primary contact on the deal (or not one of ours): every member among the account's contacts.
            targets = contacts.get(("account", record.get("AccountId")), [])
        for member_id, linked_contact in targets if isinstance(targets, list) else []:
            keep(sf.deal_outcome, record, member_id, linked_contact, settings.currency_field)

    summary.outcomes = outcomes.put_outcomes(found)
    if linker.stamps:
        results = crm.update(linker.stamps)
        summary.stamped = sum(1 for item in results if sf.item_failure(item) is None)
        for stamp, item in zip(linker.stamps, results, strict=False):
            reason = sf.item_failure(item)
            if reason:
                logger.warning("external id not stamped", extra={"record_id": stamp["Id"], "reason": reason})
    if newest is not None:
        summary.high_water_mark = sf.iso_utc(newest)
        cursors.set_cursor(CURSOR, summary.high_water_mark)
    summary.calls = crm.calls - calls_before
    return summary


def _contacts_for(
    crm: Any, opportunities: list[dict[str, Any]], linker: Linker, settings: SalesforceSettings
) -> dict[Any, Any]:
    """Contact id -> member id for the deals' contacts, and ("account", id) -> [(member, contact)] for the rest."""
    links: dict[Any, Any] = {}
    contact_ids = {str(r["ContactId"]) for r in opportunities if sf.is_record_id(r.get("ContactId"))}
    wanted = [cid for cid in contact_ids if cid not in linker.by_record]
    ext = settings.external_id_field
    for start in range(0, len(wanted), sf.COLLECTION_LIMIT):
        chunk = wanted[start : start + sf.COLLECTION_LIMIT]
        for record in crm.query(f"SELECT Id, Email, {ext} FROM Contact WHERE Id IN {sf.soql_id_list(chunk)}"):
            linker.link(record)
    for cid in contact_ids:
        if cid in linker.by_record:
            links[cid] = linker.by_record[cid]
    accounts = sorted(
        {
            str(r["AccountId"])
            for r in opportunities
            if str(r.get("ContactId") or "") not in links and sf.is_record_id(r.get("AccountId"))
        }
    )
    for start in range(0, len(accounts), sf.COLLECTION_LIMIT):
        chunk = accounts[start : start + sf.COLLECTION_LIMIT]
        soql = (
            f"SELECT Id, Email, AccountId, {ext} FROM Contact "
            f"WHERE AccountId IN {sf.soql_id_list(chunk)} AND {ext} != null"
        )
        for record in crm.query(soql):
            member_id = linker.link(record)
            if member_id:
                links.setdefault(("account", record.get("AccountId")), []).append((member_id, str(record["Id"])))
    return links


def _check_event(event: Any) -> None:
    if (
        not isinstance(event, dict)
        or event.get("detail-type") != "Scheduled Event"
        or event.get("source") != "aws.events"
    ):
        raise NotAScheduledEvent(
            "the Salesforce pull runs on EventBridge's scheduled event (source aws.events, detail-type "
            "'Scheduled Event'); this invocation carried something else"
        )


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    import os

    _check_event(event)
    if not (os.environ.get(SALESFORCE_CREDENTIALS) or os.environ.get(SALESFORCE_CREDENTIALS + SECRET_ARN_SUFFIX)):
        # Only a local run lacks both (the stack always sets the secret's ARN): say so instead of failing.
        logger.warning("Salesforce pull skipped: no credentials configured")
        return {"status": "not_configured", "message": f"set {SALESFORCE_CREDENTIALS} to pull from Salesforce"}
    from engagement.adapters.salesforce import salesforce_from_env
    from engagement.adapters.sync_state import SyncStore
    from engagement.handlers import ingest

    global _crm
    _crm = _crm or salesforce_from_env()
    store = ingest.default_dependencies().store
    summary = pull(
        _crm,
        store,
        OutcomeStore(store.settings, store.client),
        SyncStore(store.settings, store.client),
        SalesforceSettings.from_env(),
        utc_now(),
    )
    logger.info("salesforce pull", extra={**summary.as_dict(), "scheduled_time": event.get("time")})
    metrics.add_metric(name="CrmOutcomesPulled", unit="Count", value=summary.outcomes)
    metrics.add_metric(name="CrmOutcomesUnlinked", unit="Count", value=summary.unlinked)
    return summary.as_dict()
