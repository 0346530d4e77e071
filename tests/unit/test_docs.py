"""docs/mapping.md must say what the default configuration does."""

from __future__ import annotations

import re

from engagement.domain import taxonomy
from tests.conftest import ROOT


def test_mapping_tables_match_the_default_configuration():
    text = (ROOT / "docs" / "mapping.md").read_text()
    documented: dict[tuple[str, str], str | None] = {}
    row = r"^\| (github|discourse|slack|bevy|events|discord|circle|meetup) \| `([^`]+)` \| (`[^`]+`|none) \|"
    for platform, signal, action in re.findall(row, text, re.M):
        documented[(platform, signal)] = None if action == "none" else action.strip("`")
    configured = {
        (platform, signal): action
        for platform, signals in taxonomy.build().mapping.items()
        for signal, action in signals.items()
    }
    assert documented == configured


def test_action_table_matches_the_default_configuration():
    text = (ROOT / "docs" / "mapping.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d+) \| (\d+) \|", text, re.M)
    configured = {name: (a.points, a.half_life_days) for name, a in taxonomy.build().actions.items()}
    assert {name: (float(p), float(h)) for name, p, h in rows} == configured
