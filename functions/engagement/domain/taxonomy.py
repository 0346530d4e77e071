"""The scoring taxonomy: actions with points and half-lives, tiers, bots and the event mapping.

The taxonomy is configuration: a bundled default (`engagement/config/default.json`) with operator
overrides merged over it (a file locally, an SSM parameter when deployed), so points, half-lives,
tier thresholds and the mapping from platform signals to actions change without a code change.

Validation is plain Python rather than pydantic on purpose: every function loads the taxonomy
on its first invocation, and pydantic's import and first model cost about as much cold-start time
as boto3 itself (see bench/cold_import.py). Errors name the offending path, as a validator would.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from engagement.domain.identity import IdentityPolicy

SECONDS_PER_DAY = 86_400
TOP_LEVEL_KEYS = {"actions", "tiers", "task_tiers", "recalc_epsilon", "bots", "mapping", "identity"}


class TaxonomyError(ValueError):
    """The taxonomy document cannot be used; the message names the path and what is wrong."""


@dataclass(frozen=True)
class Action:
    points: float
    half_life_days: float
    label: str = ""

    @property
    def half_life_seconds(self) -> int:
        """The half-life in whole seconds: the key of the accumulator its events land in."""
        return max(1, round(self.half_life_days * SECONDS_PER_DAY))


@dataclass(frozen=True)
class Tier:
    name: str
    min_score: float


@dataclass(frozen=True)
class Taxonomy:
    actions: dict[str, Action]
    tiers: list[Tier]
    mapping: dict[str, dict[str, str | None]]
    task_tiers: list[str] = field(default_factory=list)
    recalc_epsilon: float = 0.01
    bots: dict[str, list[str]] = field(default_factory=dict)
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)

    @property
    def ranked_tiers(self) -> list[Tier]:
        """Tiers from the highest threshold down."""
        return sorted(self.tiers, key=lambda t: t.min_score, reverse=True)

    def tier_for(self, score: float) -> str:
        """The name of the highest tier whose threshold the score reaches."""
        ranked = self.ranked_tiers
        for tier in ranked:
            if score >= tier.min_score:
                return tier.name
        return ranked[-1].name

    def tier_rank(self, name: str | None) -> int:
        """0 for the lowest tier, rising; -1 for no tier or a tier no longer configured."""
        ascending = [t.name for t in reversed(self.ranked_tiers)]
        return ascending.index(name) if name in ascending else -1

    def bot_names(self, platform: str) -> frozenset[str]:
        return frozenset(name.lower() for name in self.bots.get(platform, []))


def _number(value: Any, path: str, minimum: float | None = None, exclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TaxonomyError(f"{path} must be a finite number, not {value!r}")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise TaxonomyError(f"{path} must be {'greater than' if exclusive else 'at least'} {minimum}, not {value}")
    return float(value)


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TaxonomyError(f"{path} must be an object")
    return value


def _strings(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaxonomyError(f"{path} must be a list of strings")
    return value


def _only(keys: set[str], allowed: set[str], path: str) -> None:
    unknown = sorted(keys - allowed)
    if unknown:
        raise TaxonomyError(f"{path} has unknown keys: {', '.join(unknown)}")


def from_document(document: dict[str, Any]) -> Taxonomy:
    """Validate a taxonomy document and build the taxonomy.

    Raises:
        TaxonomyError: an unknown key, a non-finite or non-positive number, a mapping to an unknown
            action, no tier starting at zero, or a task tier that is not a tier.
    """
    _only(set(_object(document, "taxonomy")), TOP_LEVEL_KEYS, "taxonomy")
    actions: dict[str, Action] = {}
    for name, raw in _object(document.get("actions"), "actions").items():
        spec = _object(raw, f"actions.{name}")
        _only(set(spec), {"points", "half_life_days", "label"}, f"actions.{name}")
        actions[name] = Action(
            points=_number(spec.get("points"), f"actions.{name}.points"),
            half_life_days=_number(spec.get("half_life_days"), f"actions.{name}.half_life_days", 0, exclusive=True),
            label=str(spec.get("label", "")),
        )

    raw_tiers = document.get("tiers")
    if not isinstance(raw_tiers, list) or not raw_tiers:
        raise TaxonomyError("tiers must be a non-empty list")
    tiers = []
    for i, raw in enumerate(raw_tiers):
        spec = _object(raw, f"tiers[{i}]")
        _only(set(spec), {"name", "min_score"}, f"tiers[{i}]")
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise TaxonomyError(f"tiers[{i}].name must be a non-empty string")
        tiers.append(Tier(spec["name"], _number(spec.get("min_score"), f"tiers[{i}].min_score")))
    if min(t.min_score for t in tiers) > 0:
        raise TaxonomyError("the lowest tier must start at 0 or below, so every score has a tier")
    names = {t.name for t in tiers}
    task_tiers = _strings(document.get("task_tiers", []), "task_tiers")
    unknown = [t for t in task_tiers if t not in names]
    if unknown:
        raise TaxonomyError(f"task_tiers names unknown tiers: {', '.join(unknown)}")

    mapping: dict[str, dict[str, str | None]] = {}
    for platform, signals in _object(document.get("mapping"), "mapping").items():
        mapping[platform] = {}
        for signal, action in _object(signals, f"mapping.{platform}").items():
            if action is not None and action not in actions:
                raise TaxonomyError(f"mapping.{platform}.{signal} names unknown action {action!r}")
            mapping[platform][signal] = action

    bots = {p: _strings(v, f"bots.{p}") for p, v in _object(document.get("bots", {}), "bots").items()}
    try:
        identity = IdentityPolicy.from_document(document.get("identity"))
    except ValueError as error:
        raise TaxonomyError(str(error)) from None
    return Taxonomy(
        actions=actions,
        tiers=tiers,
        mapping=mapping,
        task_tiers=task_tiers,
        recalc_epsilon=_number(document.get("recalc_epsilon", 0.01), "recalc_epsilon", 0),
        bots=bots,
        identity=identity,
    )


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`: objects merge, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def default_document() -> dict[str, Any]:
    """The bundled default taxonomy as a plain document."""
    text = resources.files("engagement").joinpath("config/default.json").read_text(encoding="utf-8")
    return json.loads(text)


def build(overrides: dict[str, Any] | None = None) -> Taxonomy:
    """The default taxonomy with operator overrides merged over it.

    Raises:
        TaxonomyError: the merged document is not a usable taxonomy.
    """
    return from_document(merge(default_document(), overrides or {}))
