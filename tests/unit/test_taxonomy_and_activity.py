"""Configuration validation and the small helpers every mapping relies on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from engagement.adapters import config_source
from engagement.domain import taxonomy
from engagement.domain.activity import bound_metadata, normalize_email, parse_timestamp
from engagement.domain.taxonomy import TaxonomyError

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_defaults_are_the_spec_taxonomy():
    tax = taxonomy.build()
    spec = {
        "answer": (10, 30),
        "ask": (3, 30),
        "create_content": (25, 90),
        "attend_virtual_event": (8, 60),
        "attend_in_person_event": (15, 90),
        "submit_pr": (20, 90),
        "refer": (30, 120),
        "react": (1, 14),
        "complete_challenge": (12, 60),
    }
    for name, (points, half_life) in spec.items():
        assert (tax.actions[name].points, tax.actions[name].half_life_days) == (points, half_life)
    assert [t.name for t in tax.ranked_tiers] == ["Champion", "Power User", "Active", "Casual", "Lurker"]


def test_overrides_merge_over_defaults():
    tax = taxonomy.build({"actions": {"react": {"points": 2, "half_life_days": 7}}, "recalc_epsilon": 0.5})
    assert tax.actions["react"].points == 2 and tax.actions["react"].half_life_seconds == 7 * 86_400
    assert tax.actions["answer"].points == 10  # untouched
    assert tax.recalc_epsilon == 0.5


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"mapping": {"github": {"fork": "no_such_action"}}}, "mapping.github.fork names unknown action"),
        ({"actions": {"react": {"points": 1, "half_life_days": 0}}}, "actions.react.half_life_days must be greater"),
        ({"actions": {"react": {"points": "1", "half_life_days": 3}}}, "actions.react.points must be a finite number"),
        ({"actions": {"react": {"points": float("nan"), "half_life_days": 3}}}, "finite number"),
        ({"actions": {"react": {"pionts": 1}}}, "actions.react has unknown keys: pionts"),
        ({"tiers": [{"name": "Only", "min_score": 5}]}, "lowest tier must start at 0"),
        ({"tiers": []}, "non-empty list"),
        ({"task_tiers": ["Legend"]}, "unknown tiers: Legend"),
        ({"recalc_epsilom": 1}, "unknown keys: recalc_epsilom"),
        ({"bots": {"github": "dependabot"}}, "bots.github must be a list of strings"),
    ],
)
def test_unusable_configuration_is_refused(override, words):
    with pytest.raises(TaxonomyError, match=words):
        taxonomy.build(override)


def test_config_file_overrides_are_read(tmp_path, monkeypatch):
    path = tmp_path / "taxonomy.json"
    path.write_text(
        json.dumps(
            {"tiers": [{"name": "Star", "min_score": 50}, {"name": "Other", "min_score": 0}], "task_tiers": ["Star"]}
        )
    )
    monkeypatch.setenv("ENGAGEMENT_CONFIG_FILE", str(path))
    tax = config_source.current_taxonomy()
    assert tax.tier_for(60) == "Star" and tax.tier_for(49) == "Other"


@pytest.mark.parametrize(
    ("raw", "email"),
    [
        ("  Priya.Raman@Example.COM ", "priya.raman@example.com"),
        ("21031067+Codertocat@users.noreply.github.com", None),
        ("not-an-email", None),
        ("", None),
        (None, None),
        ("a@b", None),
        (42, None),
    ],
)
def test_emails_are_normalized(raw, email):
    assert normalize_email(raw) == email


def test_timestamps_become_aware_utc():
    assert parse_timestamp("2019-11-26T02:01:12-05:00", NOW) == datetime(2019, 11, 26, 7, 1, 12, tzinfo=UTC)
    assert parse_timestamp("2024-10-18T14:42:53.064834", NOW) == datetime(2024, 10, 18, 14, 42, 53, 64834, tzinfo=UTC)
    assert parse_timestamp(1574751673, NOW) == datetime(2019, 11, 26, 7, 1, 13, tzinfo=UTC)
    assert parse_timestamp(None, NOW) == NOW
    assert parse_timestamp("yesterday", NOW) == NOW
    assert parse_timestamp(True, NOW) == NOW


def test_future_timestamps_are_clamped_to_receipt():
    assert parse_timestamp((NOW + timedelta(days=3)).isoformat(), NOW) == NOW


def test_metadata_is_bounded():
    huge = {
        "title": "x" * 10_000,
        "commits": [f"{i:040d}" for i in range(500)],
        "number": 7,
        "nested": {"a": 1},
        "body": None,
    }
    bounded = bound_metadata(huge)
    assert len(bounded["title"]) == 256
    assert len(bounded["commits"]) == 20
    assert bounded["number"] == 7
    assert "body" not in bounded
    assert len(json.dumps(bounded)) <= 4096


def test_settings_refuse_unusable_values():
    from engagement.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="MAX_BODY_BYTES must be a whole number"):
        Settings.from_env({"MAX_BODY_BYTES": "lots"})
    with pytest.raises(SettingsError, match="RAW_RETENTION_DAYS must be positive"):
        Settings.from_env({"RAW_RETENTION_DAYS": "0"})
    with pytest.raises(SettingsError, match="CRM_PROVIDER must be one of hubspot, salesforce, outbox"):
        Settings.from_env({"CRM_PROVIDER": "pipedrive"})


def test_settings_pick_the_crm_from_what_is_configured():
    from engagement.settings import Settings

    assert Settings.from_env({}).crm_provider == "outbox"
    assert Settings.from_env({"HUBSPOT_TOKEN_ARN": "arn:aws:secretsmanager:..."}).crm_provider == "hubspot"
    assert (
        Settings.from_env({"HUBSPOT_BASE_URL": "https://api.hubapi.com/"}).hubspot_base_url == "https://api.hubapi.com"
    )


def test_a_broken_override_keeps_the_last_good_taxonomy(tmp_path, monkeypatch):
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps({"actions": {"react": {"points": 2, "half_life_days": 14}}}))
    monkeypatch.setenv("ENGAGEMENT_CONFIG_FILE", str(path))
    assert config_source.current_taxonomy().actions["react"].points == 2

    path.write_text(json.dumps({"mapping": {"github": {"fork": "no_such_action"}}}))
    assert config_source.current_taxonomy().actions["react"].points == 2  # still the last good one
    path.write_text("{not json")
    assert config_source.current_taxonomy().actions["react"].points == 2
