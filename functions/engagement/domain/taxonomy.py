"""The scoring taxonomy: actions with points and half-lives, tiers, bots and the event mapping.

The taxonomy is configuration: a bundled default (`engagement/config/default.json`) with operator
overrides merged over it (a file locally, an SSM parameter when deployed), so points, half-lives,
tier thresholds and the mapping from platform signals to actions change without a code change.
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SECONDS_PER_DAY = 86_400


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    points: float
    half_life_days: float = Field(gt=0)
    label: str = ""

    @field_validator("points")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("points must be a finite number")
        return value

    @property
    def half_life_seconds(self) -> int:
        """The half-life in whole seconds: the key of the accumulator its events land in."""
        return max(1, round(self.half_life_days * SECONDS_PER_DAY))


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    min_score: float


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[str, Action]
    tiers: list[Tier]
    task_tiers: list[str] = Field(default_factory=list)
    recalc_epsilon: float = Field(default=0.01, ge=0)
    bots: dict[str, list[str]] = Field(default_factory=dict)
    mapping: dict[str, dict[str, str | None]]

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        if not self.tiers:
            raise ValueError("at least one tier is required")
        if min(t.min_score for t in self.tiers) > 0:
            raise ValueError("the lowest tier must start at 0 or below so every score has a tier")
        names = {t.name for t in self.tiers}
        unknown_tiers = [t for t in self.task_tiers if t not in names]
        if unknown_tiers:
            raise ValueError(f"task_tiers names unknown tiers: {', '.join(unknown_tiers)}")
        for platform, signals in self.mapping.items():
            for signal, action in signals.items():
                if action is not None and action not in self.actions:
                    raise ValueError(f"mapping {platform}.{signal} names unknown action {action!r}")
        return self

    @cached_property
    def ranked_tiers(self) -> list[Tier]:
        """Tiers from the highest threshold down."""
        return sorted(self.tiers, key=lambda t: t.min_score, reverse=True)

    def tier_for(self, score: float) -> str:
        """The name of the highest tier whose threshold the score reaches."""
        for tier in self.ranked_tiers:
            if score >= tier.min_score:
                return tier.name
        return self.ranked_tiers[-1].name

    def tier_rank(self, name: str | None) -> int:
        """0 for the lowest tier, rising; -1 for no tier or a tier no longer configured."""
        ascending = [t.name for t in reversed(self.ranked_tiers)]
        return ascending.index(name) if name in ascending else -1

    def bot_names(self, platform: str) -> frozenset[str]:
        return frozenset(name.lower() for name in self.bots.get(platform, []))


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`: dicts merge, everything else replaces."""
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
        pydantic.ValidationError: the merged document is not a usable taxonomy (an unknown action in
            the mapping, a non-positive half-life, no tier starting at zero).
    """
    return Taxonomy.model_validate(merge(default_document(), overrides or {}))
