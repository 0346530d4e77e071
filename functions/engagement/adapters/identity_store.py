"""Identity operations on the DynamoDB tables: show, link, unlink, merge, unmerge, suggestions, import, forget.

The model is in `engagement.domain.identity`: a merge flips pointers (`merged_into` on the absorbed members,
`parts` on the root) in one transaction and never touches events, so it costs the same for ten events or ten
thousand; an account moves between members with its own ledger (the accumulators its events added), in one
transaction conditioned on the ledger being unchanged, so an event racing the move either lands before it
(and moves with the account) or is refused and re-resolved (and lands after it). Every change is audited.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from engagement.adapters.dynamo import Store, from_item, to_item
from engagement.domain import scoring
from engagement.domain.identity import (
    MERGED_TIER,
    IdentityError,
    IdentityPolicy,
    IdentityRef,
    LinkRow,
    PersonView,
    Suggestion,
    absorbed_parts,
    account_key,
    apart_key,
    audit_key_name,
    detached_parts,
    email_key,
    handle_key,
    sso_key,
    suggest,
)
from engagement.domain.taxonomy import Taxonomy

# DynamoDB's limit of items per transaction, less the root and the absorbed root.
MAX_PARTS = 98
CUSTOMER_STAGES = {"customer", "evangelist"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@dataclass
class ForgetReport:
    member_ids: list[str]
    events: int = 0
    raw_items: int = 0
    identities: int = 0
    outcomes: int = 0
    sync_items: int = 0
    crm: str = "not asked"
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": len(self.member_ids),
            "events": self.events,
            "raw_items": self.raw_items,
            "identities": self.identities,
            "outcomes": self.outcomes,
            "sync_items": self.sync_items,
            "crm": self.crm,
        }


class IdentityStore:
    """Operator and rule-driven identity changes; each is atomic, exact and written to the audit trail."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.client = store.client
        self.settings = store.settings
        self.audit = store.audit

    # Lookups -----------------------------------------------------------------------------------------

    def find(self, ref: IdentityRef) -> str:
        """The home member of an identity (or the member named), raising IdentityError when unknown."""
        if ref.kind == "member":
            if self.store.get_member(ref.value) is None:
                raise IdentityError(f"no member {ref.value}")
            return ref.value
        if ref.kind == "handle":
            item = self.store._get(self.settings.identities_table, {"key": ref.key})
            if not item:
                raise IdentityError(f"no account is known with the handle {ref.value}")
            ref = IdentityRef("account", str(item["account"]))
        member = self.store.member_for_key(ref.key)
        if member is None:
            raise IdentityError(f"no member has {ref}")
        return member

    def _account_ref(self, ref: IdentityRef) -> IdentityRef:
        if ref.kind != "handle":
            return ref
        item = self.store._get(self.settings.identities_table, {"key": ref.key})
        if not item:
            raise IdentityError(f"no account is known with the handle {ref.value}")
        return IdentityRef("account", str(item["account"]))

    def show(self, ref: IdentityRef) -> dict[str, Any]:
        """The person an identity belongs to: the root member, its parts, every identity, score, tier, status."""
        root_id = self.store.root_of(self.find(ref))
        root, parts = self.store.cluster(root_id)
        paths = dict(root.get("parts") or {})
        members = [_member_view(root, "root", None)]
        members += [_member_view(parts[p], "part", paths[p]) for p in sorted(parts)]
        outcomes = []
        for member in [root_id, *parts]:
            outcomes += self._outcomes(member)
        customer = any(
            o.get("kind") == "deal"
            or str(o.get("lifecycle_stage") or "").lower() in CUSTOMER_STAGES
            or str(o.get("customer_status") or "").lower() == "customer"
            for o in outcomes
        )
        return {
            "member_id": root_id,
            "name": root.get("display_name") or root.get("name"),
            "email": root.get("email"),
            "status": "customer" if customer else "prospect",
            "score": round(float(root.get("score", 0)), 4),
            "tier": root.get("tier"),
            "events": int(root.get("events_total", root.get("event_count", 0))),
            "members": members,
            "crm_records": [o.get("outcome_id") for o in outcomes],
        }

    def _outcomes(self, member_id: str) -> list[dict[str, Any]]:
        return list(self.store._query(self.settings.outcomes_table, "member_id = :m", {":m": member_id}))

    def history(self, ref: IdentityRef) -> list[dict[str, Any]]:
        member_id = ref.value if ref.kind == "member" else self.find(ref)
        return self.audit.history(member_id)

    # Merge and unmerge -------------------------------------------------------------------------------

    def merge(
        self,
        first: IdentityRef | str,
        into: IdentityRef | str,
        actor: str,
        now: datetime,
        taxonomy: Taxonomy | None = None,
        rule: str | None = None,
        why: str | None = None,
    ) -> dict[str, Any]:
        """Make the person of `first` and the person of `into` one member, rooted at `into`'s root.

        The absorbed root and its parts point to the surviving root; the survivor's score becomes the sum of
        both, brought to `now`. Events are not touched.

        Raises:
            IdentityError: either is unknown, they already are one member, or the result would have more than
                `MAX_PARTS` parts.
        """
        a = self.store.root_of(first if isinstance(first, str) else self.find(first))
        b = self.store.root_of(into if isinstance(into, str) else self.find(into))
        if a == b:
            raise IdentityError("these are already one member")
        for _ in range(5):
            absorbed, absorbed_parts_items = self.store.cluster(a)
            survivor = self.store.get_member(b)
            if survivor is None or survivor.get("merged_into") or absorbed.get("merged_into"):
                a, b = self.store.root_of(a), self.store.root_of(b)  # one of them was merged meanwhile
                if a == b:
                    raise IdentityError("these are already one member")
                continue
            parts = absorbed_parts(survivor.get("parts") or {}, a, absorbed.get("parts") or {})
            if len(parts) > MAX_PARTS:
                raise IdentityError(f"a member can be made of at most {MAX_PARTS + 1} members")
            shared_contact = not absorbed.get("email") or absorbed.get("email") == survivor.get("email")
            root_sets = ["parts = :parts"]
            values: dict[str, Any] = {":parts": parts}
            survivor_guard = _parts_guard(survivor, values, ":old_parts")
            if not survivor.get("email") and absorbed.get("email"):
                # The survivor had no address: the CRM finds the person by the absorbed member's.
                root_sets += ["email = :e", "email_from = :from"]
                values.update({":e": absorbed["email"], ":from": a})
                shared_contact = True
            if not survivor.get("display_name") and absorbed.get("display_name"):
                root_sets.append("display_name = :dn")
                values[":dn"] = absorbed["display_name"]
            absorbed_values: dict[str, Any] = {
                ":root": b,
                ":now": now.isoformat(),
                ":merged": MERGED_TIER,
                ":zero": 0,
                ":one": 1,
                ":shared": shared_contact,
                ":none": "none",
            }
            absorbed_guard = _parts_guard(absorbed, absorbed_values, ":old_parts")
            items: list[dict[str, Any]] = [
                {
                    "Update": {
                        "TableName": self.settings.members_table,
                        "Key": to_item({"member_id": b}),
                        "UpdateExpression": "SET " + ", ".join(root_sets),
                        "ConditionExpression": f"attribute_not_exists(merged_into) AND {survivor_guard}",
                        "ExpressionAttributeValues": to_item(values),
                    }
                },
                {
                    "Update": {
                        "TableName": self.settings.members_table,
                        "Key": to_item({"member_id": a}),
                        "UpdateExpression": "SET merged_into = :root, merged_at = :now, tier = :merged, score = :zero, "
                        "version = version + :one, crm_shared = :shared, previous_tier = if_not_exists(tier, :none), "
                        "tier_changed_at = :now REMOVE parts",
                        "ConditionExpression": f"attribute_not_exists(merged_into) AND {absorbed_guard}",
                        "ExpressionAttributeValues": to_item(absorbed_values),
                    }
                },
            ]
            for part_id in absorbed_parts_items:
                items.append(
                    {
                        "Update": {
                            "TableName": self.settings.members_table,
                            "Key": to_item({"member_id": part_id}),
                            "UpdateExpression": "SET merged_into = :root",
                            "ConditionExpression": "merged_into = :old",
                            "ExpressionAttributeValues": to_item({":root": b, ":old": a}),
                        }
                    }
                )
            try:
                self.client.transact_write_items(TransactItems=items)
            except ClientError as error:
                if _code(error) == "TransactionCanceledException":
                    continue  # something changed under us (an event's refresh, another merge): read again
                raise
            break
        else:
            raise IdentityError("the members kept changing while merging; try again")

        scores = {
            a: float(absorbed.get("score", 0)),
            b: float(survivor.get("score", 0)),
        }
        self.audit.append(
            "merged",
            [a, b, *absorbed_parts_items],
            actor,
            now,
            rule=rule,
            why=why,
            details={
                a: {"before": _identities(absorbed), "merged_into": b},
                b: {"before": _identities(survivor), "absorbed": a},
            },
            facts={"root": b, "absorbed": a, "parts": sorted(parts), "scores_before": scores},
        )
        refreshed = self.store.refresh(b, now, taxonomy) if taxonomy is not None else None
        return {
            "member_id": b,
            "absorbed": a,
            "parts": sorted(parts),
            "score": round(refreshed.score, 4) if refreshed else None,
            "tier": refreshed.tier if refreshed else None,
        }

    def auto_merge(self, member_id: str, other: str, rule: str, now: datetime) -> bool:
        """Merge by an automatic rule unless an unmerge kept the two apart; the older member survives."""
        a, b = self.store.root_of(member_id), self.store.root_of(other)
        if a == b or self._kept_apart({member_id, a}, {other, b}):
            return False
        items = self.store.get_members([a, b])
        if a not in items or b not in items:
            return False
        # The longer-known member survives (its id is the one the CRM has had longest); then the busier one.
        survivor, absorbed = sorted(
            (a, b), key=lambda m: (str(items[m].get("created_at", "")), -int(items[m].get("events_total", 0)), m)
        )
        try:
            self.merge(absorbed, survivor, "rule", now, rule=rule, why=f"automatic rule {rule}")
        except IdentityError:
            return False
        return True

    def _kept_apart(self, firsts: set[str], seconds: set[str]) -> bool:
        keys = {apart_key(x, y) for x in firsts for y in seconds if x != y}
        return any(self.store._get(self.settings.identities_table, {"key": k}) for k in keys)

    def unmerge(
        self, ref: IdentityRef | str, actor: str, now: datetime, taxonomy: Taxonomy, why: str | None = None
    ) -> dict[str, Any]:
        """Take a member, and everything that came in through it, back out of the member it was merged into.

        Both come back exactly as if they had never been merged: each keeps the accounts and events it had,
        events that arrived while merged included (they were always stored on their own member). The two are
        then kept apart: no automatic rule merges them again (an operator still can).

        Raises:
            IdentityError: unknown, or not merged into anything.
        """
        member_id = ref if isinstance(ref, str) else self.find(ref)
        for _ in range(5):
            item = self.store.get_member(member_id)
            if item is None:
                raise IdentityError(f"no member {member_id}")
            root_id = item.get("merged_into")
            if not root_id:
                raise IdentityError(
                    f"member {member_id} is not merged into another member; to split off an account, use unlink"
                )
            root = self.store.get_member(str(root_id))
            if root is None:
                raise IdentityError(f"member {member_id} points to a member that does not exist: {root_id}")
            remaining, leaving = detached_parts(root.get("parts") or {}, member_id)
            moving = {member_id, *leaving}
            root_values: dict[str, Any] = {}
            root_guard = _parts_guard(root, root_values, ":old_parts")
            root_sets, root_removes = [], []
            if remaining:
                root_sets.append("parts = :parts")
                root_values[":parts"] = remaining
            else:
                root_removes.append("parts")
            if root.get("email_from") in moving:
                root_removes += ["email_from", "email"]
            newest_root = self._newest_activity(str(root_id), remaining)
            if newest_root:
                root_sets.append("last_activity_at = :la")
                root_values[":la"] = newest_root
            else:
                root_removes.append("last_activity_at")
            expression = ("SET " + ", ".join(root_sets) + " " if root_sets else "") + (
                "REMOVE " + ", ".join(root_removes) if root_removes else ""
            )
            member_values: dict[str, Any] = {":root": root_id}
            member_sets = []
            if leaving:
                member_sets.append("parts = :parts")
                member_values[":parts"] = leaving
            newest_member = self._newest_activity(member_id, leaving)
            if newest_member:
                member_sets.append("last_activity_at = :la")
                member_values[":la"] = newest_member
            member_expression = ("SET " + ", ".join(member_sets) + " " if member_sets else "") + (
                "REMOVE merged_into, merged_at, crm_shared" + ("" if leaving else ", parts")
            )
            items: list[dict[str, Any]] = [
                {
                    "Update": {
                        "TableName": self.settings.members_table,
                        "Key": to_item({"member_id": root_id}),
                        "UpdateExpression": expression.strip(),
                        "ConditionExpression": f"attribute_not_exists(merged_into) AND {root_guard}",
                        "ExpressionAttributeValues": to_item(root_values),
                    }
                },
                {
                    "Update": {
                        "TableName": self.settings.members_table,
                        "Key": to_item({"member_id": member_id}),
                        "UpdateExpression": member_expression,
                        "ConditionExpression": "merged_into = :root",
                        "ExpressionAttributeValues": to_item(member_values),
                    }
                },
            ]
            for part_id in leaving:
                items.append(
                    {
                        "Update": {
                            "TableName": self.settings.members_table,
                            "Key": to_item({"member_id": part_id}),
                            "UpdateExpression": "SET merged_into = :new",
                            "ConditionExpression": "merged_into = :root",
                            "ExpressionAttributeValues": to_item({":new": member_id, ":root": root_id}),
                        }
                    }
                )
            items.append(
                {
                    "Put": {
                        "TableName": self.settings.identities_table,
                        "Item": to_item(
                            {"key": apart_key(member_id, str(root_id)), "kept_apart_at": now.isoformat(), "by": actor}
                        ),
                    }
                }
            )
            try:
                self.client.transact_write_items(TransactItems=items)
            except ClientError as error:
                if _code(error) == "TransactionCanceledException":
                    continue
                raise
            break
        else:
            raise IdentityError("the members kept changing while unmerging; try again")
        self.audit.append(
            "unmerged",
            [member_id, str(root_id), *leaving],
            actor,
            now,
            why=why,
            details={member_id: {"after": _identities(item)}, str(root_id): {"after": _identities(root)}},
            facts={"root": root_id, "detached": sorted(moving)},
        )
        first = self.store.refresh(member_id, now, taxonomy)
        second = self.store.refresh(str(root_id), now, taxonomy)
        return {
            "member_id": member_id,
            "score": round(first.score, 4),
            "tier": first.tier,
            "parts": sorted(leaving),
            "was_merged_into": {"member_id": root_id, "score": round(second.score, 4), "tier": second.tier},
        }

    def _newest_activity(self, member_id: str, parts: dict[str, str]) -> str | None:
        """The newest event time of a member's own accounts and its parts' accounts (by-account index)."""
        items = self.store.get_members([member_id, *parts])
        newest = None
        for item in items.values():
            for account in item.get("accounts") or set():
                answer = self.client.query(
                    TableName=self.settings.events_table,
                    IndexName="by-account",
                    KeyConditionExpression="account = :a",
                    ExpressionAttributeValues=to_item({":a": account}),
                    ScanIndexForward=False,
                    Limit=1,
                )
                for event in answer.get("Items", []):
                    moment = str(from_item(event)["occurred_at"])
                    newest = max(newest or moment, moment)
        return newest

    # Links -------------------------------------------------------------------------------------------

    def link(
        self, member: IdentityRef, identity: IdentityRef, actor: str, now: datetime, taxonomy: Taxonomy, why: str | None
    ) -> dict[str, Any]:
        """Attach an identity to a member. An account that belongs to another member moves with its points.

        Raises:
            IdentityError: the member is unknown, the identity is a member (use merge), or it is theirs already.
        """
        target = self.find(member)
        if identity.kind == "member":
            raise IdentityError("to combine two members use merge, not link")
        identity = self._account_ref(identity)
        owner = self.store.member_for_key(identity.key)
        if owner == target:
            raise IdentityError(f"{identity} already belongs to member {target}")
        if identity.kind == "account":
            if owner is None:
                self._new_account(target, identity.value, now)
            else:
                self._move_account(identity.value, owner, target, now)
        else:
            self._move_key(identity, owner, target, now)
        members = [target, *([owner] if owner else [])]
        self.audit.append(
            "linked",
            members,
            actor,
            now,
            why=why,
            details={target: {"added": [str(identity)]}, **({owner: {"removed": [str(identity)]}} if owner else {})},
            facts={"kind": identity.kind, "from": owner, "to": target},
        )
        for m in {self.store.root_of(x) for x in members}:
            self.store.refresh(m, now, taxonomy)
        return {"member_id": target, "linked": str(identity), "moved_from": owner}

    def unlink(
        self, member: IdentityRef, identity: IdentityRef, actor: str, now: datetime, taxonomy: Taxonomy, why: str | None
    ) -> dict[str, Any]:
        """Detach an identity from a member. An account becomes a member of its own, taking its points along.

        Raises:
            IdentityError: unknown member, the identity is not the member's, or it is the member's only account.
        """
        home = self.find(member)
        identity = self._account_ref(identity)
        owner = self.store.member_for_key(identity.key) if identity.kind != "member" else None
        root = self.store.root_of(home)
        if owner is None or self.store.root_of(owner) != root:
            raise IdentityError(f"{identity} does not belong to member {home}")
        result: dict[str, Any] = {"member_id": owner, "unlinked": str(identity)}
        if identity.kind == "account":
            item = self.store.get_member(owner) or {}
            if len(item.get("accounts") or set()) <= 1:
                raise IdentityError(
                    f"{identity} is the only account of member {owner}; to separate it from the others, unmerge "
                    f"member {owner}"
                )
            new_member = self._empty_member(identity.value, item, now)
            self._move_account(identity.value, owner, new_member, now)
            self.client.put_item(
                TableName=self.settings.identities_table,
                Item=to_item({"key": apart_key(new_member, owner), "kept_apart_at": now.isoformat(), "by": actor}),
            )
            result["new_member_id"] = new_member
        else:
            self._drop_key(identity, owner)
        self.audit.append(
            "unlinked",
            [owner, *([result["new_member_id"]] if "new_member_id" in result else [])],
            actor,
            now,
            why=why,
            details={owner: {"removed": [str(identity)]}},
            facts={"kind": identity.kind, "from": owner, "to": result.get("new_member_id")},
        )
        for m in {self.store.root_of(owner), *([result["new_member_id"]] if "new_member_id" in result else [])}:
            self.store.refresh(m, now, taxonomy)
        return result

    def _empty_member(self, account: str, source: dict[str, Any], now: datetime) -> str:
        from engagement.adapters.audit import new_key

        member_id = uuid.uuid4().hex
        handle = (source.get("handles") or {}).get(account) or account.partition(":")[2]
        self.client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.settings.members_table,
                        "Item": to_item(
                            {
                                "member_id": member_id,
                                "created_at": now.isoformat(),
                                "name": handle,
                                "handles": {},
                                "event_count": 0,
                                "version": 0,
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(member_id)",
                    }
                },
                {
                    "Put": {
                        "TableName": self.settings.identities_table,
                        "Item": self.audit.key_item(member_id, new_key()),
                    }
                },
            ]
        )
        return member_id

    def _new_account(self, target: str, account: str, now: datetime) -> None:
        """Claim an account no event has named yet: its future events land on `target`."""
        platform, _, user_id = account.partition(":")
        self.client.transact_write_items(
            TransactItems=[
                self.store._identity_put(account_key(account), target, now, event_count=0),
                {
                    "Update": {
                        "TableName": self.settings.members_table,
                        "Key": to_item({"member_id": target}),
                        "UpdateExpression": "ADD accounts :a SET handles.#k = :h",
                        "ConditionExpression": "attribute_exists(member_id)",
                        "ExpressionAttributeNames": {"#k": account},
                        "ExpressionAttributeValues": to_item({":a": {account}, ":h": user_id}),
                    }
                },
            ]
        )

    def _move_account(self, account: str, source: str, target: str, now: datetime) -> None:
        """Move an account and exactly the points its events earned from one member to another."""
        for _ in range(8):
            item = self.store._get(self.settings.identities_table, {"key": account_key(account)})
            if item is None or item.get("member_id") != source:
                raise IdentityError(f"account {account} is no longer on member {source}")
            ledger = scoring.accumulators_of(item)
            count = int(item.get("event_count", 0))
            handle = (self.store.get_member(source) or {}).get("handles", {}).get(account) or account
            names = {"#k": account}
            minus: dict[str, Any] = {":a": {account}, ":n": -count}
            plus: dict[str, Any] = {":a": {account}, ":n": count, ":h": handle}
            adds_minus, adds_plus = ["event_count :n"], ["event_count :n", "accounts :a"]
            for i, (name, value) in enumerate(sorted(ledger.items())):
                names[f"#acc{i}"] = name
                minus[f":t{i}"] = scoring.as_decimal(-value)
                plus[f":t{i}"] = scoring.as_decimal(value)
                adds_minus.append(f"#acc{i} :t{i}")
                adds_plus.append(f"#acc{i} :t{i}")
            guard: dict[str, Any] = {":src": source, ":dst": target, ":now": now.isoformat()}
            if "event_count" in item:
                condition = "member_id = :src AND event_count = :count"
                guard[":count"] = count
            else:
                condition = "member_id = :src AND attribute_not_exists(event_count)"
            items = [
                {
                    "Update": {
                        "TableName": self.settings.identities_table,
                        "Key": to_item({"key": account_key(account)}),
                        "UpdateExpression": "SET member_id = :dst, linked_at = :now",
                        "ConditionExpression": condition,
                        "ExpressionAttributeValues": to_item(guard),
                    }
                },
                {
                    "Update": {
                        "TableName": self.settings.members_table,
                        "Key": to_item({"member_id": source}),
                        "UpdateExpression": f"ADD {', '.join(adds_minus)} DELETE accounts :a REMOVE handles.#k",
                        "ConditionExpression": "attribute_exists(member_id)",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": to_item(minus),
                    }
                },
                {
                    "Update": {
                        "TableName": self.settings.members_table,
                        "Key": to_item({"member_id": target}),
                        "UpdateExpression": f"ADD {', '.join(adds_plus)} SET handles.#k = :h",
                        "ConditionExpression": "attribute_exists(member_id)",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": to_item(plus),
                    }
                },
            ]
            try:
                self.client.transact_write_items(TransactItems=items)
            except ClientError as error:
                if _code(error) == "TransactionCanceledException":
                    continue  # an event landed on the account meanwhile: move the ledger as it is now
                raise
            for member in (source, target):
                newest = self._newest_activity(member, {})
                if newest:
                    self.client.update_item(
                        TableName=self.settings.members_table,
                        Key=to_item({"member_id": member}),
                        UpdateExpression="SET last_activity_at = :la",
                        ExpressionAttributeValues=to_item({":la": newest}),
                    )
            return
        raise IdentityError(f"account {account} kept receiving events while moving; try again")

    def _move_key(self, identity: IdentityRef, owner: str | None, target: str, now: datetime) -> None:
        """Point an email or SSO subject at `target` (taking it from `owner`, if any)."""
        attribute = "emails" if identity.kind == "email" else "sso_subjects"
        items: list[dict[str, Any]] = []
        if owner is None:
            items.append(self.store._identity_put(identity.key, target, now, by="operator"))
        else:
            items.append(
                {
                    "Update": {
                        "TableName": self.settings.identities_table,
                        "Key": to_item({"key": identity.key}),
                        "UpdateExpression": "SET member_id = :dst, linked_at = :now",
                        "ConditionExpression": "member_id = :src",
                        "ExpressionAttributeValues": to_item({":src": owner, ":dst": target, ":now": now.isoformat()}),
                    }
                }
            )
            items.append(self._remove_value(owner, attribute, identity.value))
        sets = f"ADD {attribute} :v"
        values: dict[str, Any] = {":v": {identity.value}}
        if identity.kind == "email":
            sets += " SET email = if_not_exists(email, :e) DELETE unverified_emails :v"
            values[":e"] = identity.value
        items.append(
            {
                "Update": {
                    "TableName": self.settings.members_table,
                    "Key": to_item({"member_id": target}),
                    "UpdateExpression": sets,
                    "ConditionExpression": "attribute_exists(member_id)",
                    "ExpressionAttributeValues": to_item(values),
                }
            }
        )
        self.client.transact_write_items(TransactItems=items)

    def _remove_value(self, member_id: str, attribute: str, value: str) -> dict[str, Any]:
        item = self.store.get_member(member_id) or {}
        update: dict[str, Any] = {
            "TableName": self.settings.members_table,
            "Key": to_item({"member_id": member_id}),
            "UpdateExpression": f"DELETE {attribute} :v",
            "ExpressionAttributeValues": to_item({":v": {value}}),
        }
        if attribute == "emails" and item.get("email") == value:
            others = sorted(set(item.get("emails") or set()) - {value})
            if others:
                update["UpdateExpression"] += " SET email = :e"
                update["ExpressionAttributeValues"] = to_item({":v": {value}, ":e": others[0]})
            else:
                update["UpdateExpression"] += " REMOVE email"
        return {"Update": update}

    def _drop_key(self, identity: IdentityRef, owner: str) -> None:
        attribute = "emails" if identity.kind == "email" else "sso_subjects"
        self.client.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self.settings.identities_table,
                        "Key": to_item({"key": identity.key}),
                        "ConditionExpression": "member_id = :m",
                        "ExpressionAttributeValues": to_item({":m": owner}),
                    }
                },
                self._remove_value(owner, attribute, identity.value),
            ]
        )

    # Suggestions and imports -------------------------------------------------------------------------

    def people(self) -> list[PersonView]:
        """Every person (root member) as suggestions compare them."""
        items = list(self.store.scan_members())
        by_id = {str(i["member_id"]): i for i in items}
        views = []
        for item in items:
            if item.get("merged_into"):
                continue
            members = [item] + [by_id[p] for p in (item.get("parts") or {}) if p in by_id]
            verified: set[str] = set()
            unverified: set[str] = set()
            handles: set[tuple[str, str]] = set()
            for member in members:
                verified |= set(member.get("emails") or set())
                unverified |= set(member.get("unverified_emails") or set())
                for account, handle in (member.get("handles") or {}).items():
                    handles.add((str(account).partition(":")[0], str(handle).lower()))
            name = item.get("display_name") or next(
                (m.get("display_name") for m in members if m.get("display_name")), None
            )
            views.append(
                PersonView(
                    str(item["member_id"]),
                    name,
                    frozenset(verified),
                    frozenset(unverified - verified),
                    frozenset(handles),
                )
            )
        return views

    def kept_apart_pairs(self) -> set[tuple[str, str]]:
        pairs: set[tuple[str, str]] = set()
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.settings.identities_table,
            FilterExpression="begins_with(#k, :p)",
            ExpressionAttributeNames={"#k": "key"},
            ExpressionAttributeValues={":p": {"S": "apart#"}},
        ):
            for item in page.get("Items", []):
                _, a, b = item["key"]["S"].split("#")
                pairs.add((a, b))
        return pairs

    def suggestions(self, policy: IdentityPolicy) -> list[Suggestion]:
        return suggest(self.people(), policy, self.kept_apart_pairs())

    def apply_suggestions(self, policy: IdentityPolicy, now: datetime, taxonomy: Taxonomy) -> list[Suggestion]:
        """Merge the suggestions an operator's `identity.auto_merge_rules` allow; returns those merged."""
        merged = []
        for suggestion in self.suggestions(policy):
            allowed = suggestion.rules & policy.auto_merge_rules
            if not allowed:
                continue
            rule = sorted(allowed)[0]
            if self.auto_merge(suggestion.first, suggestion.second, rule, now):
                merged.append(suggestion)
        for root in {self.store.root_of(s.first) for s in merged}:
            self.store.refresh(root, now, taxonomy)
        return merged

    def import_rows(self, rows: list[LinkRow], actor: str, now: datetime, taxonomy: Taxonomy) -> dict[str, Any]:
        """Link each row's identities into one member: claim the unknown ones, merge the members of the known."""
        summary = {"rows": len(rows), "linked": 0, "merged": 0, "unchanged": 0, "errors": []}
        for row in rows:
            try:
                members: list[str] = []
                unknown: list[IdentityRef] = []
                for ref in row.refs:
                    try:
                        members.append(self.find(ref))
                    except IdentityError:
                        unknown.append(ref)
                roots = list(dict.fromkeys(self.store.root_of(m) for m in members))
                if not roots:
                    summary["errors"].append(f"line {row.line}: none of its identities is known yet")
                    continue
                target = roots[0]
                for other in roots[1:]:
                    self.merge(other, target, actor, now, rule="csv_import", why=row.note or f"CSV line {row.line}")
                    summary["merged"] += 1
                for ref in unknown:
                    if ref.kind == "handle":
                        summary["errors"].append(f"line {row.line}: no account is known with the handle {ref.value}")
                        continue
                    self.link(
                        IdentityRef("member", target), ref, actor, now, taxonomy, row.note or f"CSV line {row.line}"
                    )
                    summary["linked"] += 1
                if len(roots) == 1 and not unknown:
                    summary["unchanged"] += 1
                self.store.refresh(target, now, taxonomy)
            except IdentityError as error:
                summary["errors"].append(f"line {row.line}: {error}")
        return summary

    # Forgetting --------------------------------------------------------------------------------------

    def forget(self, ref: IdentityRef, actor: str, now: datetime, crm: Any = None) -> ForgetReport:
        """Erase a person: events, raw payloads, identities, outcomes, sync state and members; clear the CRM.

        The person is the whole merged member the identity belongs to. The CRM is cleared first (only existing
        records, never creating one), so a failure there stops before anything is deleted and the command can
        simply be run again. The audit trail keeps one entry saying that member ids were forgotten, by whom and
        when; every earlier entry's personal details become unreadable, as the members' keys are deleted.

        Raises:
            IdentityError: the identity is unknown.
            RuntimeError: the CRM did not confirm the clearing (nothing was deleted).
        """
        from engagement.domain.crm import Forgotten

        root_id = self.store.root_of(self.find(ref))
        root, parts = self.store.cluster(root_id)
        members = {root_id: root, **parts}
        report = ForgetReport(member_ids=sorted(members))
        accounts: set[str] = set()
        emails: set[str] = set()
        subjects: set[str] = set()
        handles: dict[str, str] = {}
        for item in members.values():
            accounts |= {str(a) for a in item.get("accounts") or set()}
            emails |= {str(e) for e in (item.get("emails") or set()) | (item.get("unverified_emails") or set())}
            subjects |= {str(s) for s in item.get("sso_subjects") or set()}
            handles.update({str(k): str(v) for k, v in (item.get("handles") or {}).items()})
        if item_email := root.get("email"):
            emails.add(str(item_email))

        if crm is not None:
            clearing = Forgotten(root_id, tuple(sorted(members)), tuple(sorted(emails)))
            result = crm.clear([clearing])
            if root_id in result.failed or root_id not in result.pushed:
                raise RuntimeError(f"the CRM did not clear the person: {result.failed.get(root_id, 'no answer')}")
            report.crm = "cleared"

        event_ids: set[str] = set()
        for account in accounts:
            event_ids |= {str(e["event_id"]) for e in self.store.events_of_account(account)}
        for member_id in members:
            event_ids |= {str(e["event_id"]) for e in self.store.events_of(member_id)}
        for event_id in sorted(event_ids):
            for chunk in self.store._query(self.settings.raw_table, "event_id = :e", {":e": event_id}):
                self.client.delete_item(
                    TableName=self.settings.raw_table, Key=to_item({"event_id": event_id, "chunk": chunk["chunk"]})
                )
                report.raw_items += 1
            self.client.delete_item(TableName=self.settings.events_table, Key=to_item({"event_id": event_id}))
            report.events += 1

        keys = {account_key(a) for a in accounts} | {email_key(e) for e in emails} | {sso_key(s) for s in subjects}
        for account, handle in handles.items():
            platform = account.partition(":")[0]
            item = self.store._get(self.settings.identities_table, {"key": handle_key(platform, handle)})
            if item and str(item.get("account")) in accounts:
                keys.add(handle_key(platform, handle))
        keys |= self._keys_naming(accounts, set(members))
        for key in sorted(keys):
            item = self.store._get(self.settings.identities_table, {"key": key})
            if item is None:
                continue
            owner = item.get("member_id")
            if key.startswith(("email#", "sso#")) and owner not in members:
                continue  # the address is another member's verified one (this person had it unverified)
            self.client.delete_item(TableName=self.settings.identities_table, Key=to_item({"key": key}))
            report.identities += 1

        from engagement.adapters.outcomes import OutcomeStore

        outcomes = OutcomeStore(self.settings, self.client)
        for member_id in members:
            report.outcomes += outcomes.forget(member_id)
            for item in list(self.store._query(self.settings.sync_table, "member_id = :m", {":m": member_id})):
                self.client.delete_item(
                    TableName=self.settings.sync_table,
                    Key=to_item({"member_id": member_id, "sync_key": item["sync_key"]}),
                )
                report.sync_items += 1

        self.audit.append(
            "forgotten",
            [root_id, *sorted(parts)],
            actor,
            now,
            facts={k: v for k, v in report.as_dict().items() if k != "crm"} | {"crm": report.crm},
        )
        for member_id in members:
            self.client.delete_item(
                TableName=self.settings.identities_table, Key=to_item({"key": audit_key_name(member_id)})
            )
            self.client.delete_item(TableName=self.settings.members_table, Key=to_item({"member_id": member_id}))
        return report

    def _keys_naming(self, accounts: set[str], members: set[str]) -> set[str]:
        """Identity items that name the person without being keyed by them: topic owners, kept-apart markers."""
        found: set[str] = set()
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.settings.identities_table,
            FilterExpression="begins_with(#k, :owner) OR begins_with(#k, :apart)",
            ExpressionAttributeNames={"#k": "key"},
            ExpressionAttributeValues={":owner": {"S": "owner#"}, ":apart": {"S": "apart#"}},
        ):
            for item in page.get("Items", []):
                key = item["key"]["S"]
                owner_of_topic = key.startswith("owner#") and item.get("account", {}).get("S") in accounts
                if owner_of_topic or (key.startswith("apart#") and set(key.split("#")[1:]) & members):
                    found.add(key)
        return found


def _parts_guard(item: dict[str, Any], values: dict[str, Any], name: str) -> str:
    """A condition that the member's parts are still what we read (a concurrent merge changes them)."""
    parts = item.get("parts")
    if not parts:
        return "attribute_not_exists(parts)"
    values[name] = dict(parts)
    return f"parts = {name}"


def _identities(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "accounts": sorted(str(a) for a in item.get("accounts") or set()),
        "emails": sorted(str(e) for e in item.get("emails") or set()),
        "sso_subjects": sorted(str(s) for s in item.get("sso_subjects") or set()),
    }


def _member_view(item: dict[str, Any], role: str, path: str | None) -> dict[str, Any]:
    handles = item.get("handles") or {}
    return {
        "member_id": item["member_id"],
        "role": role,
        "merged_through": path,
        "name": item.get("display_name") or item.get("name"),
        "accounts": [{"account": str(a), "handle": handles.get(a)} for a in sorted(item.get("accounts") or set())],
        "emails": sorted(str(e) for e in item.get("emails") or set()),
        "unverified_emails": sorted(str(e) for e in item.get("unverified_emails") or set()),
        "sso_subjects": sorted(str(s) for s in item.get("sso_subjects") or set()),
        "own_events": int(item.get("event_count", 0)),
    }
