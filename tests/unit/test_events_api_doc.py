"""docs/events-api.yaml must describe what POST /events does."""

from __future__ import annotations

import pytest

from engagement.domain import generic_events, taxonomy
from tests.conftest import ROOT

yaml = pytest.importorskip("yaml")


def document() -> dict:
    return yaml.safe_load((ROOT / "docs" / "events-api.yaml").read_text())


def test_it_is_an_openapi_3_document_for_post_events():
    doc = document()
    assert doc["openapi"].startswith("3.")
    operation = doc["paths"]["/events"]["post"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"X-Event-Source", "webhook-id", "webhook-timestamp", "webhook-signature"}
    assert {"200", "400", "401", "413", "415"} <= set(operation["responses"])


def test_its_limits_and_action_types_are_the_codes():
    schemas = document()["components"]["schemas"]
    assert schemas["Batch"]["properties"]["events"]["maxItems"] == generic_events.MAX_BATCH == 100
    event = schemas["Event"]
    assert set(event["properties"]) == generic_events.ITEM_KEYS
    assert set(event["properties"]["action_type"]["enum"]) == set(taxonomy.build().mapping["events"])
