"""Outcomes from HubSpot: read the contacts and closed-won deals a webhook or the scheduled pull names,
link each contact to a community member by email, and store the outcomes.

Calls: batch reads of up to 100 objects; v4 association batch reads (deal -> contacts); the CRM search
API for the pull, which HubSpot limits to 4 requests per second (the client's search limiter) and to
10,000 results per query (the pull restarts its query from the last modification time it saw).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engagement.adapters.hubspot import HubSpot
from engagement.domain import hubspot_inbound as domain
from engagement.domain.outcomes import Outcome

SEARCH_PAGE = 100
SEARCH_RESULT_CAP = 10_000


@dataclass
class InboundSummary:
    contacts: int = 0
    deals: int = 0
    linked: int = 0  # contacts whose email belongs to a community member
    unknown: int = 0  # contacts with no member (not part of the community, or no email)
    outcomes: int = 0  # outcomes written (older states are never written over newer ones)
    calls: int = 0
    members: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {k: (len(v) if isinstance(v, set) else v) for k, v in self.__dict__.items()}


class HubSpotOutcomes:
    def __init__(
        self,
        hubspot: HubSpot,
        member_for_email: Callable[[str], str | None],
        outcomes: Any,  # adapters.outcomes.OutcomeStore
        plan_property: str | None = None,
    ) -> None:
        self.hubspot = hubspot
        self.member_for_email = member_for_email
        self.outcomes = outcomes
        self.plan_property = plan_property

    @property
    def contact_properties(self) -> list[str]:
        return [*domain.CONTACT_PROPERTIES, *([self.plan_property] if self.plan_property else [])]

    # Reads --------------------------------------------------------------------------------

    def read(self, object_type: str, ids: list[str], properties: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for batch in domain.chunks(ids):
            answer = self.hubspot.request(
                "POST",
                f"/crm/v3/objects/{object_type}/batch/read",
                {"properties": properties, "inputs": [{"id": i} for i in batch]},
            )
            found.extend(answer.get("results") or [])
        return found

    def associations(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, list[str]]:
        """Associated object ids (v4 batch read, 100 per call), e.g. deals -> contacts."""
        linked: dict[str, list[str]] = {}
        for batch in domain.chunks(ids):
            answer = self.hubspot.request(
                "POST", f"/crm/v4/associations/{from_type}/{to_type}/batch/read", {"inputs": [{"id": i} for i in batch]}
            )
            for row in answer.get("results") or []:
                linked[str(row["from"]["id"])] = [str(to["toObjectId"]) for to in row.get("to") or []]
        return linked

    def deal_contacts(self, deal_ids: list[str]) -> dict[str, list[tuple[str, str | None]]]:
        """Per deal, the contacts it reaches: its own contacts, and the contacts of its companies (with the company)."""
        direct = self.associations("deals", "contacts", deal_ids)
        companies = self.associations("deals", "companies", deal_ids)
        company_ids = sorted({c for ids in companies.values() for c in ids})
        people = self.associations("companies", "contacts", company_ids) if company_ids else {}
        reach: dict[str, list[tuple[str, str | None]]] = {}
        for deal_id in deal_ids:
            pairs = [(contact, None) for contact in direct.get(deal_id, [])]
            for company in companies.get(deal_id, []):
                pairs.extend((contact, company) for contact in people.get(company, []))
            seen: set[str] = set()
            reach[deal_id] = [p for p in pairs if not (p[0] in seen or seen.add(p[0]))]
        return reach

    def search(
        self, object_type: str, filters: list[dict[str, Any]], properties: list[str], modified: str, since: int
    ) -> Iterator[dict[str, Any]]:
        """Every object matching `filters` modified at or after `since` (ms), oldest first.

        Past HubSpot's 10,000-result cap the query starts again from the newest modification time seen
        (inclusive, so a few objects come twice; their writes are newer-wins). Known gap: more than 10,000
        objects modified in one millisecond would stop the walk there.
        """
        while True:
            after: str | None = None
            seen = 0
            last = since
            while True:
                body: dict[str, Any] = {
                    "filterGroups": [
                        {"filters": [*filters, {"propertyName": modified, "operator": "GTE", "value": str(since)}]}
                    ],
                    "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
                    "properties": properties,
                    "limit": SEARCH_PAGE,
                }
                if after:
                    body["after"] = after
                answer = self.hubspot.request("POST", f"/crm/v3/objects/{object_type}/search", body, search=True)
                for row in answer.get("results") or []:
                    seen += 1
                    stamp = _ms((row.get("properties") or {}).get(modified))
                    last = max(last, stamp or last)
                    yield row
                after = ((answer.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    return
                if seen + SEARCH_PAGE > SEARCH_RESULT_CAP:
                    break  # HubSpot refuses to page past 10,000: query again from the newest time seen
            if last == since:
                return
            since = last

    # Outcomes -----------------------------------------------------------------------------

    def store(self, contacts: list[dict[str, Any]], deals: list[dict[str, Any]], summary: InboundSummary) -> None:
        """Link contacts to members by email and write their status and closed-won deal outcomes."""
        outcomes: list[Outcome] = []
        members: dict[str, str] = {}
        by_id = {str(c["id"]): c for c in contacts}
        for contact in contacts:
            email = domain.normalized_email((contact.get("properties") or {}).get("email"))
            member_id = self.member_for_email(email) if email else None
            if member_id is None:
                summary.unknown += 1
                continue
            summary.linked += 1
            members[str(contact["id"])] = member_id
            outcome = domain.contact_outcome(member_id, contact, self.plan_property)
            if outcome:
                outcomes.append(outcome)
        won = [d for d in deals if domain.is_closed_won(d)]
        if won:
            links = self.deal_contacts([str(d["id"]) for d in won])
            missing = sorted({c for pairs in links.values() for c, _ in pairs} - set(by_id))
            for contact in self.read("contacts", missing, self.contact_properties):
                by_id[str(contact["id"])] = contact
                email = domain.normalized_email((contact.get("properties") or {}).get("email"))
                member_id = self.member_for_email(email) if email else None
                if member_id:
                    members[str(contact["id"])] = member_id
            for deal in won:
                for contact_id, company_id in links.get(str(deal["id"]), []):
                    if contact_id in members:
                        outcome = domain.deal_outcome(members[contact_id], deal, by_id[contact_id], company_id)
                        if outcome:
                            outcomes.append(outcome)
        summary.members.update(o.member_id for o in outcomes)
        summary.outcomes += self.outcomes.put_outcomes(outcomes)

    def from_webhook(self, batch: domain.WebhookBatch) -> InboundSummary:
        summary = InboundSummary()
        calls = self.hubspot.calls
        contacts = self.read("contacts", list(batch.contact_ids), self.contact_properties)
        deals = self.read("deals", list(batch.deal_ids), list(domain.DEAL_PROPERTIES))
        summary.contacts, summary.deals = len(contacts), len(deals)
        self.store(contacts, deals, summary)
        summary.calls = self.hubspot.calls - calls
        return summary

    def pull(self, sync: Any, now: datetime) -> InboundSummary:
        """Contacts and closed-won deals changed since the last pull; cursors kept in the sync table."""
        summary = InboundSummary()
        calls = self.hubspot.calls
        contact_cursor = int(sync.cursor("hubspot:contacts") or 0)
        deal_cursor = int(sync.cursor("hubspot:deals") or 0)
        contacts = list(self.search("contacts", [], self.contact_properties, "lastmodifieddate", contact_cursor))
        won_filter = [{"propertyName": "hs_is_closed_won", "operator": "EQ", "value": "true"}]
        deals = list(self.search("deals", won_filter, list(domain.DEAL_PROPERTIES), "hs_lastmodifieddate", deal_cursor))
        summary.contacts, summary.deals = len(contacts), len(deals)
        self.store(contacts, deals, summary)
        # The cursor is the newest modification seen (inclusive next time: GTE), so nothing between pulls is lost.
        sync.set_cursor("hubspot:contacts", str(_newest(contacts, "lastmodifieddate", contact_cursor)))
        sync.set_cursor("hubspot:deals", str(_newest(deals, "hs_lastmodifieddate", deal_cursor)))
        summary.calls = self.hubspot.calls - calls
        return summary


def _ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _newest(rows: list[dict[str, Any]], prop: str, default: int) -> int:
    stamps = [_ms((r.get("properties") or {}).get(prop)) for r in rows]
    return max([default, *(s for s in stamps if s is not None)])
