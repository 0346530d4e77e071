"""Identity resolution, the pure part: identity keys, merge trees, suggestions and link imports.

A person is one *member*; what they are known by is a set of identity keys in the identities table:

- `account#<platform>:<user id>`: a platform account. Events land on the account's *home* member and on the
  account's own ledger (its score accumulators), so an account can move between members exactly.
- `email#<address>`: a verified address (trimmed, lower-cased). Unverified addresses are kept on the member
  only, as evidence for suggestions, and never link anything by themselves.
- `sso#<subject>`: a single-sign-on subject (Circle's SSO user id, or one sent to `POST /events`).
- `handle#<platform>:<handle>`: a public handle (a GitHub login) pointing to its account, so a profile that
  names a login can be resolved with key reads.

Merging never moves events. A merged member keeps its own accounts and ledger and points to the member it was
merged into (`merged_into`); that *root* lists its parts with the path by which each came in (`parts`), and
its score is the sum of its own and its parts' accumulators. Unmerging is then the exact inverse: a member
and everything that came in through it leave the root, events that arrived meanwhile included, because they
were always stored on their own home member.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engagement.domain.activity import normalize_email

# The tier a merged member shows (and the CRM is told) while its activity counts under the root.
MERGED_TIER = "Merged"

# `12345+login@users.noreply.github.com` (since 2017) and `login@users.noreply.github.com` (older accounts).
_NOREPLY = re.compile(r"^(?:(\d+)\+)?([a-z0-9](?:[a-z0-9-]{0,38}))@users\.noreply\.github\.com$")

# Rules that link or merge as events arrive; each can be switched off in the taxonomy's `identity.auto_links`.
AUTO_LINK_RULES = ("verified_email", "sso_subject", "github_noreply", "profile_link")
# Suggestion rules; merged automatically only when listed in `identity.auto_merge_rules`.
SUGGESTION_RULES = {
    "unverified_email": 0.8,
    "same_name_and_domain": 0.7,
    "same_handle": 0.5,
}
DEFAULT_FREE_MAIL = (
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "proton.me",
    "protonmail.com",
    "aol.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.ru",
    "qq.com",
    "163.com",
    "yandex.ru",
)
MIN_HANDLE_CHARS = 3


class IdentityError(ValueError):
    """An identity reference or an identity operation that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class IdentityPolicy:
    """Which automatic rules apply, and what profiles say about other accounts (taxonomy `identity`)."""

    auto_links: frozenset[str] = frozenset(AUTO_LINK_RULES)
    auto_merge_rules: frozenset[str] = frozenset()
    # platform -> profile field -> platform it names (Discourse: {"1": "github"}: user field 1 holds a GitHub login)
    profile_fields: dict[str, dict[str, str]] = field(default_factory=dict)
    free_mail_domains: frozenset[str] = frozenset(DEFAULT_FREE_MAIL)

    @classmethod
    def from_document(cls, raw: Any) -> IdentityPolicy:
        """Validate the taxonomy's `identity` object.

        Raises:
            ValueError: an unknown key or rule, or a field of the wrong type (the message names the path).
        """
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("identity must be an object")
        unknown = set(raw) - {"auto_links", "auto_merge_rules", "profile_fields", "free_mail_domains"}
        if unknown:
            raise ValueError(f"identity has unknown keys: {', '.join(sorted(unknown))}")
        links = _names(raw.get("auto_links", list(AUTO_LINK_RULES)), "identity.auto_links", AUTO_LINK_RULES)
        merges = _names(raw.get("auto_merge_rules", []), "identity.auto_merge_rules", tuple(SUGGESTION_RULES))
        fields = raw.get("profile_fields", {})
        if not isinstance(fields, dict) or not all(
            isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items())
            for v in fields.values()
        ):
            raise ValueError("identity.profile_fields must map platform -> {field: platform}")
        free = raw.get("free_mail_domains", list(DEFAULT_FREE_MAIL))
        if not isinstance(free, list) or not all(isinstance(d, str) for d in free):
            raise ValueError("identity.free_mail_domains must be a list of strings")
        return cls(frozenset(links), frozenset(merges), fields, frozenset(d.lower() for d in free))


def _names(value: Any, path: str, allowed: tuple[str, ...]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path} must be a list of strings")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"{path} names unknown rules: {', '.join(unknown)}; known: {', '.join(allowed)}")
    return value


# Keys ---------------------------------------------------------------------------------------------------


def account_key(account: str) -> str:
    return f"account#{account}"


def email_key(email: str) -> str:
    return f"email#{email}"


def sso_key(subject: str) -> str:
    return f"sso#{subject}"


def handle_key(platform: str, handle: str) -> str:
    return f"handle#{platform}:{handle.strip().lower()}"


def apart_key(a: str, b: str) -> str:
    """The marker that keeps two members from being merged automatically again after an unmerge."""
    first, second = sorted((a, b))
    return f"apart#{first}#{second}"


def audit_key_name(member_id: str) -> str:
    return f"auditkey#{member_id}"


def github_noreply(email: str | None) -> tuple[str | None, str | None]:
    """(GitHub user id, login) encoded in a GitHub noreply address, or (None, None).

    `583231+octocat@users.noreply.github.com` encodes account 583231; the older `octocat@users.noreply...`
    form encodes only the login.
    """
    if not isinstance(email, str):
        return None, None
    found = _NOREPLY.match(email.strip().lower())
    if not found:
        return None, None
    return found.group(1), found.group(2)


@dataclass(frozen=True)
class IdentityRef:
    """What an operator names: a member id, an account, an email, an SSO subject or a public handle."""

    kind: str  # "member", "account", "email", "sso", "handle"
    value: str  # member id, "<platform>:<user id>", address, subject, "<platform>:<handle>"

    @property
    def key(self) -> str:
        if self.kind == "account":
            return account_key(self.value)
        if self.kind == "email":
            return email_key(self.value)
        if self.kind == "sso":
            return sso_key(self.value)
        if self.kind == "handle":
            platform, _, handle = self.value.partition(":")
            return handle_key(platform, handle)
        raise IdentityError("a member id is not an identity key")

    def __str__(self) -> str:
        return self.value if self.kind in ("member", "account") else f"{self.kind}:{self.value}"


def parse_ref(text: str, member_ok: bool = True) -> IdentityRef:
    """An identity reference as operators write it.

    `email:ADDR` (or a bare address), `sso:SUBJECT`, `handle:PLATFORM:HANDLE` (e.g. `handle:github:octocat`),
    `PLATFORM:USER_ID` (e.g. `github:583231`, `slack:U0PRIYA01`), or a 32-hex member id.

    Raises:
        IdentityError: the text is none of these, or names an address that is not one.
    """
    text = (text or "").strip()
    if not text:
        raise IdentityError("an identity is required")
    kind, sep, rest = text.partition(":")
    if sep and kind == "email" or not sep and "@" in text:
        raw = rest if sep else text
        noreply_id, login = github_noreply(raw)
        if noreply_id:
            return IdentityRef("account", f"github:{noreply_id}")
        if login:
            return IdentityRef("handle", f"github:{login}")
        email = normalize_email(raw)
        if email is None:
            raise IdentityError(f"{raw!r} is not an email address")
        return IdentityRef("email", email)
    if sep and kind == "sso":
        if not rest.strip():
            raise IdentityError("sso: needs a subject")
        return IdentityRef("sso", rest.strip())
    if sep and kind == "handle":
        platform, sep2, handle = rest.partition(":")
        if not sep2 or not platform or not handle.strip():
            raise IdentityError("a handle is written handle:PLATFORM:HANDLE, e.g. handle:github:octocat")
        return IdentityRef("handle", f"{platform}:{handle.strip().lower()}")
    if sep and kind and rest:
        return IdentityRef("account", f"{kind}:{rest}")
    if member_ok and re.fullmatch(r"[0-9a-f]{32}", text):
        return IdentityRef("member", text)
    raise IdentityError(
        f"{text!r} is not an identity: write PLATFORM:USER_ID, email:ADDRESS, sso:SUBJECT, "
        "handle:PLATFORM:HANDLE or a member id"
    )


# Merge trees --------------------------------------------------------------------------------------------


def absorbed_parts(into_parts: Mapping[str, str], other_root: str, other_parts: Mapping[str, str]) -> dict[str, str]:
    """The root's parts after it absorbs another root with its own parts.

    A part's path names the members it came in through, outermost first: absorbing `b` (whose part `c` came in
    directly) gives `b: "b"` and `c: "b/c"`, so unmerging `b` later takes `c` along, as it was before.
    """
    parts = dict(into_parts)
    parts[other_root] = other_root
    for member, path in other_parts.items():
        parts[member] = f"{other_root}/{path}"
    return parts


def detached_parts(parts: Mapping[str, str], member: str) -> tuple[dict[str, str], dict[str, str]]:
    """Split a root's parts for unmerging `member`: (the root's remaining parts, `member`'s own parts).

    Everything that came in through `member` leaves with it, its paths shortened to start after `member`.

    Raises:
        IdentityError: `member` is not a part of this root.
    """
    if member not in parts:
        raise IdentityError(f"member {member} is not merged into this member")
    remaining: dict[str, str] = {}
    leaving: dict[str, str] = {}
    for part, path in parts.items():
        segments = path.split("/")
        if member in segments:
            tail = segments[segments.index(member) + 1 :]
            if part != member:
                leaving[part] = "/".join(tail)
        else:
            remaining[part] = path
    return remaining, leaving


# Suggestions --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonView:
    """What suggestions compare of one member (a root with its parts' identities folded in)."""

    member_id: str
    name: str | None
    verified_emails: frozenset[str]
    unverified_emails: frozenset[str]
    handles: frozenset[tuple[str, str]]  # (platform, handle lower-cased)


@dataclass(frozen=True)
class Reason:
    rule: str
    text: str


@dataclass(frozen=True)
class Suggestion:
    """Two members that may be one person, with how sure we are and every reason."""

    first: str
    second: str
    confidence: float
    reasons: tuple[Reason, ...]

    @property
    def rules(self) -> frozenset[str]:
        return frozenset(r.rule for r in self.reasons)


def _domain(email: str) -> str:
    return email.rpartition("@")[2]


def _name_key(name: str | None) -> str | None:
    if not name:
        return None
    words = re.findall(r"[^\W\d_]+", name.lower())
    return " ".join(words) if len(words) >= 2 else None


def suggest(
    people: Iterable[PersonView], policy: IdentityPolicy, apart: set[tuple[str, str]] | None = None
) -> list[Suggestion]:
    """Pairs of members that may be one person, strongest first.

    Rules (confidence of each, combined as independent evidence `1 - prod(1 - c)`):
    - `unverified_email`: an address one member has unverified is another's verified address;
    - `same_name_and_domain`: the same full name (two words or more) and an email at the same company domain
      (free-mail domains do not count);
    - `same_handle`: the same handle (three characters or more) on two different platforms.
    Members kept apart by an unmerge are never suggested again.
    """
    people = list(people)
    apart = apart or set()
    found: dict[tuple[str, str], list[Reason]] = defaultdict(list)

    def add(a: str, b: str, reason: Reason) -> None:
        if a == b:
            return
        pair = (min(a, b), max(a, b))
        if pair in apart or any(r.rule == reason.rule for r in found[pair]):
            return
        found[pair].append(reason)

    verified: dict[str, str] = {}
    for person in people:
        for email in person.verified_emails:
            verified[email] = person.member_id
    for person in people:
        for email in sorted(person.unverified_emails):
            owner = verified.get(email)
            if owner:
                text = f"an address {person.member_id} has unverified is the verified address of {owner}"
                add(person.member_id, owner, Reason("unverified_email", text))

    by_name_domain: dict[tuple[str, str], list[str]] = defaultdict(list)
    for person in people:
        key = _name_key(person.name)
        if key is None:
            continue
        domains = {_domain(e) for e in person.verified_emails | person.unverified_emails}
        for domain in sorted(domains - policy.free_mail_domains):
            by_name_domain[(key, domain)].append(person.member_id)
    for (name, domain), members in by_name_domain.items():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                add(a, b, Reason("same_name_and_domain", f"same name {name!r} and company email domain {domain}"))

    by_handle: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for person in people:
        for platform, handle in person.handles:
            if len(handle) >= MIN_HANDLE_CHARS:
                by_handle[handle].append((person.member_id, platform))
    for handle, owners in by_handle.items():
        for i, (a, platform_a) in enumerate(owners):
            for b, platform_b in owners[i + 1 :]:
                if platform_a != platform_b:
                    first, second = sorted((platform_a, platform_b))
                    add(a, b, Reason("same_handle", f"same handle {handle!r} on {first} and {second}"))

    suggestions = []
    for (a, b), reasons in found.items():
        if not reasons:
            continue
        doubt = 1.0
        for reason in reasons:
            doubt *= 1.0 - SUGGESTION_RULES[reason.rule]
        suggestions.append(Suggestion(a, b, round(1.0 - doubt, 4), tuple(reasons)))
    return sorted(suggestions, key=lambda s: (-s.confidence, s.first, s.second))


# CSV import ---------------------------------------------------------------------------------------------

# Columns that are not platforms: `email` (verified by whoever made the file), `sso`, and `github_login`.
_SPECIAL_COLUMNS = {"email", "emails", "sso", "github_login", "note"}


@dataclass(frozen=True)
class LinkRow:
    line: int
    refs: tuple[IdentityRef, ...]
    note: str | None = None


def parse_links_csv(text: str) -> tuple[list[LinkRow], list[str]]:
    """Rows of identities that belong to one person, and the errors of rows that cannot be used.

    The header names columns: `email` (one address; `emails` may hold several separated by `;`), `sso`,
    `github_login`, `note`, and any platform name (`github`, `slack`, `discourse`, ...) whose cells hold that
    platform's user ids exactly as the platform's events carry them (`discourse` ids are `<forum host>/<id>`).
    Empty cells are skipped; a row needs two identities or more to link anything.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        return [], ["the file is empty or has no header row"]
    columns = [(c or "").strip().lower() for c in reader.fieldnames]
    rows: list[LinkRow] = []
    errors: list[str] = []
    for line, raw in enumerate(reader, start=2):
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        refs: list[IdentityRef] = []
        try:
            for column in columns:
                cell = values.get(column, "")
                if not cell or column == "note":
                    continue
                if column in ("email", "emails"):
                    refs.extend(parse_ref(f"email:{part}") for part in cell.split(";") if part.strip())
                elif column == "sso":
                    refs.append(IdentityRef("sso", cell))
                elif column == "github_login":
                    refs.append(IdentityRef("handle", f"github:{cell.lower()}"))
                elif re.fullmatch(r"[a-z][a-z0-9_-]*", column):
                    refs.append(IdentityRef("account", f"{column}:{cell}"))
                else:
                    raise IdentityError(f"column {column!r} is not an identity column")
        except IdentityError as error:
            errors.append(f"line {line}: {error}")
            continue
        unique = tuple(dict.fromkeys(refs))
        if len(unique) < 2:
            errors.append(f"line {line}: needs two identities or more to link")
            continue
        rows.append(LinkRow(line, unique, values.get("note") or None))
    return rows, errors
