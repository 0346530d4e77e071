"""Per-stage configuration: defaults for each known stage, overridden key by key from CDK context.

Everything here is plain data read at synth time; nothing needs an AWS lookup, so `cdk synth` stays offline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

PLATFORMS = ("github", "discourse")
# Enabled per stage with `-c platforms=...` (infra/community_webhooks.py); not in the defaults.
COMMUNITY_PLATFORMS = ("slack", "discord", "bevy", "events")
CRM_PROVIDERS = ("hubspot", "salesforce", "outbox")


@dataclass(frozen=True)
class StageConfig:
    name: str
    platforms: tuple[str, ...]
    recalc_schedule: str
    crm_provider: str
    raw_retention_days: int
    log_retention_days: int
    # prod keeps tables, secrets and logs when the stack is deleted, and turns on table deletion protection.
    retain: bool
    waf: bool = False
    alarm_email: str | None = None
    # The CRM sync's reserved concurrency: HubSpot allows a private app 100 requests per 10 s (190 on Pro and
    # Enterprise); each invocation sends at most one batch at a time, so 2 concurrent batches stay well inside it.
    crm_sync_concurrency: int = 2
    # Set false when the account already has an API Gateway CloudWatch role (an account-wide, per-region setting).
    api_gateway_cloudwatch_role: bool = True
    # Salesforce (crm_provider=salesforce): how often outcomes are pulled, and the SALESFORCE_* settings.
    salesforce_pull_schedule: str = "rate(15 minutes)"
    salesforce_object: str = "Contact"
    salesforce_api_version: str = "66.0"
    salesforce_duplicate_rule_header: str = ""
    # Scheduled pollers (infra/pollers.py), opt-in: `-c pollers=discord,circle,meetup`, with what they read.
    pollers: tuple[str, ...] = ()
    discord_channels: tuple[str, ...] = ()
    meetup_groups: tuple[str, ...] = ()


DEFAULTS = {
    "dev": StageConfig(
        name="dev",
        platforms=PLATFORMS,
        recalc_schedule="rate(1 day)",
        crm_provider="hubspot",
        raw_retention_days=14,
        log_retention_days=30,
        retain=False,
    ),
    "prod": StageConfig(
        name="prod",
        platforms=PLATFORMS,
        recalc_schedule="rate(1 day)",
        crm_provider="hubspot",
        raw_retention_days=90,
        log_retention_days=90,
        retain=True,
    ),
}
# A stage not listed above (e.g. `staging`) starts from prod's settings: keeping data is the safe default.
FALLBACK = "prod"

# Context keys that override one setting each: `npx cdk synth -c stage=prod -c waf=true -c platforms=github`.
STAGE_CONTEXT = "stage"
DEFAULT_STAGE = "dev"


class StageConfigError(ValueError):
    """A context value the stack cannot use."""


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise StageConfigError(f"expected true or false, not {value!r}")


def _platforms(value: Any) -> tuple[str, ...]:
    names = value if isinstance(value, list) else str(value).split(",")
    platforms = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    known = PLATFORMS + COMMUNITY_PLATFORMS
    unknown = set(platforms) - set(known)
    if unknown or not platforms:
        raise StageConfigError(f"platforms must be a non-empty subset of {', '.join(known)}, not {value!r}")
    return platforms


POLLER_PLATFORMS = ("discord", "circle", "meetup")


def _names(value: Any) -> tuple[str, ...]:
    names = value if isinstance(value, list) else str(value).split(",")
    return tuple(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))


def _pollers(value: Any) -> tuple[str, ...]:
    pollers = tuple(n.lower() for n in _names(value))
    unknown = set(pollers) - set(POLLER_PLATFORMS)
    if unknown:
        raise StageConfigError(f"pollers must be a subset of {', '.join(POLLER_PLATFORMS)}, not {value!r}")
    return pollers


def _positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise StageConfigError(f"expected a positive integer, not {value!r}")
    return number


def _non_negative_int(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise StageConfigError(f"expected 0 or a positive integer, not {value!r}")
    return number


def _crm_provider(value: Any) -> str:
    if value not in CRM_PROVIDERS:
        raise StageConfigError(f"crm_provider must be one of {', '.join(CRM_PROVIDERS)}, not {value!r}")
    return str(value)


def _salesforce_object(value: Any) -> str:
    if value not in ("Contact", "Lead"):
        raise StageConfigError(f"salesforce_object must be Contact or Lead, not {value!r}")
    return str(value)


OVERRIDES = {
    "platforms": _platforms,
    "recalc_schedule": str,
    "crm_provider": _crm_provider,
    "raw_retention_days": _positive_int,
    "log_retention_days": _positive_int,
    "waf": _bool,
    "alarm_email": lambda v: str(v) or None,
    "crm_sync_concurrency": _non_negative_int,
    "api_gateway_cloudwatch_role": _bool,
    "salesforce_pull_schedule": str,
    "salesforce_object": _salesforce_object,
    "salesforce_api_version": str,
    "salesforce_duplicate_rule_header": str,
    "pollers": _pollers,
    "discord_channels": _names,
    "meetup_groups": _names,
}


def resolve(context: Any) -> StageConfig:
    """The stage named by the `stage` context key, with any other context keys of OVERRIDES applied.

    Args:
        context: a callable like `app.node.try_get_context`, returning None for a missing key.
    """
    name = context(STAGE_CONTEXT) or DEFAULT_STAGE
    config = replace(DEFAULTS.get(name, DEFAULTS[FALLBACK]), name=name)
    changes = {key: parse(context(key)) for key, parse in OVERRIDES.items() if context(key) is not None}
    return replace(config, **changes)
