"""A CRM stand-in: one JSON line per change, so a local run shows what the CRM would receive."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime

from engagement.adapters.hubspot import PushResult
from engagement.domain.crm import COMMUNITY_PROPERTIES, Forgotten, MemberChange


class Outbox:
    def __init__(self, path: str) -> None:
        self.path = path

    def push(self, changes: Sequence[MemberChange]) -> PushResult:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        written_at = datetime.now(UTC).isoformat()
        with open(self.path, "a", encoding="utf-8") as handle:
            for change in changes:
                line = {
                    "written_at": written_at,
                    "email": change.email,
                    "properties": change.properties(),
                    "task": {"subject": change.task_subject(), "body": change.task_body()}
                    if change.entered_task_tier
                    else None,
                    "change": asdict(change),
                }
                handle.write(json.dumps(line, sort_keys=True) + "\n")
        return PushResult(pushed={c.member_id for c in changes}, calls=0)

    def clear(self, people: Sequence[Forgotten]) -> PushResult:
        """One line per forgotten person: the properties a CRM would clear on their contacts, all None."""
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        written_at = datetime.now(UTC).isoformat()
        with open(self.path, "a", encoding="utf-8") as handle:
            for person in people:
                line = {
                    "written_at": written_at,
                    "cleared": True,
                    "member_ids": list(person.member_ids),
                    "emails": list(person.emails),
                    "properties": dict.fromkeys(COMMUNITY_PROPERTIES),
                }
                handle.write(json.dumps(line, sort_keys=True) + "\n")
        return PushResult(pushed={p.key for p in people}, calls=0)
