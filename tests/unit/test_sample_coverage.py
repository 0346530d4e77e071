"""Every real payload of the community platforms in ../shared/samples is exercised by some test.

The mapping tests assert each payload's action (or its ignore reason) file by file; this guard fails when a
sample is added to the shared folder and no test names it, as `test_github_mapping.py` does for GitHub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, sample

FOLDERS = ("slack", "discord", "meetup", "circle")
# What a client sends, not what we receive: the poller's own queries are tested against the responses.
NOT_PAYLOADS = {"signature-test-vector.json"}


def _payloads(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.iterdir()):
        if path.name in NOT_PAYLOADS or path.name.endswith(".request.json"):
            continue
        if path.suffix == ".jsonc":
            names.append(path.name)  # valid JSON after comments are removed; the Discord tests strip them
            continue
        if path.suffix != ".json":
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue  # not valid JSON as published (the issue asks only for the valid ones)
        names.append(path.name)
    return names


@pytest.mark.parametrize("platform", FOLDERS)
def test_every_valid_sample_is_named_by_a_test(platform):
    folder = sample(platform)
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    missing = [name for name in _payloads(folder) if name not in tests and Path(name).stem not in tests]
    assert missing == [], f"no test reads these {platform} samples: {missing}"
