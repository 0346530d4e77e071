"""The pure identity rules: references, noreply addresses, merge trees, suggestions, CSV rows, policy."""

from __future__ import annotations

import pytest

from engagement.domain.activity import email_and_links, profile_links
from engagement.domain.identity import (
    IdentityError,
    IdentityPolicy,
    IdentityRef,
    PersonView,
    absorbed_parts,
    detached_parts,
    github_noreply,
    parse_links_csv,
    parse_ref,
    suggest,
)
from engagement.domain.taxonomy import TaxonomyError, build


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("github:583231", "account", "github:583231"),
        ("discourse:forum.example.com/7", "account", "discourse:forum.example.com/7"),
        (" Priya.Raman@Example.COM ", "email", "priya.raman@example.com"),
        ("email:ana@example.org", "email", "ana@example.org"),
        ("sso:auth0|abc", "sso", "auth0|abc"),
        ("handle:github:Priya-Builds", "handle", "github:priya-builds"),
        ("583231+priya-builds@users.noreply.github.com", "account", "github:583231"),
        ("priya-builds@users.noreply.github.com", "handle", "github:priya-builds"),
        ("0123456789abcdef0123456789abcdef", "member", "0123456789abcdef0123456789abcdef"),
    ],
)
def test_references_as_operators_write_them(text, kind, value):
    assert parse_ref(text) == IdentityRef(kind, value)


@pytest.mark.parametrize("text", ["", "   ", "email:not-an-address", "handle:github", "sso:", "plainword"])
def test_unusable_references_say_what_to_write(text):
    with pytest.raises(IdentityError):
        parse_ref(text)


def test_a_member_id_is_not_an_identity_where_one_is_required():
    with pytest.raises(IdentityError):
        parse_ref("0123456789abcdef0123456789abcdef", member_ok=False)


def test_noreply_addresses_name_the_github_account():
    assert github_noreply("583231+Octocat@users.noreply.github.com") == ("583231", "octocat")
    assert github_noreply("octocat@users.noreply.github.com") == (None, "octocat")
    assert github_noreply("octocat@example.com") == (None, None)
    assert email_and_links("583231+octocat@users.noreply.github.com") == (None, (("github", "583231"),))
    assert email_and_links(" Ana@Example.com ") == ("ana@example.com", ())


def test_profile_fields_become_links_by_the_operators_mapping():
    fields = {"1": "github", "2": "slack"}
    assert profile_links({"1": "@Priya-Builds", "2": "U0PRIYA01", "3": "x"}, fields) == (
        ("github", "@priya-builds"),
        ("slack", "U0PRIYA01"),
    )
    assert profile_links({"1": ""}, fields) == ()
    assert profile_links(None, fields) == ()


def test_parts_keep_the_path_they_came_in_by_and_leave_with_it():
    # b absorbed c; then a absorbs b (with c), then d.
    parts = absorbed_parts({}, "b", {"c": "c"})
    assert parts == {"b": "b", "c": "b/c"}
    parts = absorbed_parts(parts, "d", {})
    remaining, leaving = detached_parts(parts, "b")
    assert remaining == {"d": "d"} and leaving == {"c": "c"}
    remaining, leaving = detached_parts(parts, "c")  # undoing only c-into-b
    assert remaining == {"b": "b", "d": "d"} and leaving == {}
    with pytest.raises(IdentityError):
        detached_parts(parts, "zz")


def person(member_id, name=None, verified=(), unverified=(), handles=()):
    return PersonView(member_id, name, frozenset(verified), frozenset(unverified), frozenset(handles))


def test_suggestions_combine_independent_reasons_and_skip_free_mail_and_kept_apart_pairs():
    policy = IdentityPolicy()
    people = [
        person("a", "Tomás Ortega", verified={"tomas@acme.io"}, handles={("github", "tortega")}),
        person("b", "Tomas Ortega", unverified={"t.ortega@acme.io"}, handles={("discourse", "tortega")}),
        person("c", "Ana Lima", verified={"ana@gmail.com"}),
        person("d", "Ana Lima", verified={"lima.ana@gmail.com"}, unverified={"x@y.io"}),
        person("e", None, unverified={"tomas@acme.io"}),
        person("f", None, handles={("slack", "tortega")}),
    ]
    found = {(s.first, s.second): s for s in suggest(people, policy, apart={("a", "f")})}
    # "Tomás" and "Tomas" are different words to the name rule (no accent folding), so a/b share only the handle.
    assert ("a", "b") in found and found[("a", "b")].rules == {"same_handle"}
    assert found[("a", "e")].rules == {"unverified_email"} and found[("a", "e")].confidence == pytest.approx(0.8)
    assert ("c", "d") not in found  # same name, but a free-mail domain is no evidence
    assert ("a", "f") not in found  # kept apart by an unmerge
    assert ("b", "f") in found and found[("b", "f")].confidence == pytest.approx(0.5)


def test_name_and_domain_and_handle_together_are_stronger_than_either():
    people = [
        person("a", "Lena Fischer", verified={"lena@fischer.dev"}, handles={("github", "lenaf")}),
        person("b", "Lena Fischer", unverified={"l.fischer@fischer.dev"}, handles={("slack", "lenaf")}),
    ]
    (only,) = suggest(people, IdentityPolicy())
    assert only.rules == {"same_name_and_domain", "same_handle"}
    assert only.confidence == pytest.approx(1 - (1 - 0.7) * (1 - 0.5))
    assert [r.text for r in only.reasons] == [
        "same name 'lena fischer' and company email domain fischer.dev",
        "same handle 'lenaf' on github and slack",
    ]


def test_csv_rows_name_their_problems_by_line():
    rows, errors = parse_links_csv(
        "\ufeffEmail,GitHub_Login,slack,discourse,note\n"
        "Ana@Example.com,octo-ana,U0ANA,forum.example.com/31,meetup badge\n"
        "bad-address,,U1,,\n"
        "solo@example.com,,,,\n"
    )
    assert len(rows) == 1 and rows[0].line == 2 and rows[0].note == "meetup badge"
    assert rows[0].refs == (
        IdentityRef("email", "ana@example.com"),
        IdentityRef("handle", "github:octo-ana"),
        IdentityRef("account", "slack:U0ANA"),
        IdentityRef("account", "discourse:forum.example.com/31"),
    )
    assert errors == ["line 3: 'bad-address' is not an email address", "line 4: needs two identities or more to link"]
    assert parse_links_csv("") == ([], ["the file is empty or has no header row"])


def test_identity_policy_is_validated_with_the_taxonomy():
    assert build().identity.auto_merge_rules == frozenset()
    with pytest.raises(TaxonomyError, match="identity.auto_merge_rules names unknown rules: everything"):
        build({"identity": {"auto_merge_rules": ["everything"]}})
    with pytest.raises(TaxonomyError, match="identity has unknown keys"):
        build({"identity": {"merge_all": True}})
    policy = build({"identity": {"auto_links": ["sso_subject"], "profile_fields": {"discourse": {"1": "github"}}}})
    assert policy.identity.auto_links == {"sso_subject"}
