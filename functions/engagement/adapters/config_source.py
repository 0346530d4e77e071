"""Where the taxonomy's overrides come from: a local JSON file, or an SSM parameter when deployed.

The parameter is read through Powertools (cached for `CACHE_SECONDS`), so an operator's change
reaches every function within minutes, without a deploy.
"""

from __future__ import annotations

import json
import os
from typing import Any

from engagement.domain import taxonomy as taxonomy_module
from engagement.domain.taxonomy import Taxonomy
from engagement.settings import CONFIG_FILE, CONFIG_PARAMETER

CACHE_SECONDS = 300
_built: dict[str, Taxonomy] = {}


def load_overrides() -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    path = os.environ.get(CONFIG_FILE)
    if path:
        with open(path, encoding="utf-8") as handle:
            overrides = taxonomy_module.merge(overrides, json.load(handle))
    parameter = os.environ.get(CONFIG_PARAMETER)
    if parameter:
        from aws_lambda_powertools.utilities import parameters  # deferred: only deployed functions pay for it

        value = parameters.get_parameter(parameter, transform="json", max_age=CACHE_SECONDS)
        if isinstance(value, dict):
            overrides = taxonomy_module.merge(overrides, value)
    return overrides


def current_taxonomy() -> Taxonomy:
    """The taxonomy in force now: the bundled default with the current overrides merged in."""
    overrides = load_overrides()
    key = json.dumps(overrides, sort_keys=True)
    if key not in _built:
        _built.clear()
        _built[key] = taxonomy_module.build(overrides)
    return _built[key]
