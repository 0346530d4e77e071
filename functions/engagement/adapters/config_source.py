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
_last_good: Taxonomy | None = None


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
    """The taxonomy in force now: the bundled default with the current overrides merged in.

    A broken override (unreadable JSON, an unknown action, a negative half-life) never stops
    ingestion: the last taxonomy that worked stays in force, or the bundled default if none has,
    and the error is logged on every load until an operator fixes it.
    """
    global _last_good
    try:
        overrides = load_overrides()
        key = json.dumps(overrides, sort_keys=True)
        if key not in _built:
            taxonomy = taxonomy_module.build(overrides)
            _built.clear()
            _built[key] = taxonomy
        _last_good = _built[key]
    except Exception as error:  # any failure to read or validate the overrides, by design
        from engagement.observability import logger

        logger.error("taxonomy overrides unusable; keeping the last good taxonomy", extra={"reason": str(error)})
        if _last_good is None:
            _last_good = taxonomy_module.build()
    return _last_good
