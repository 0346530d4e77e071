"""Environment variables read by the functions, checked once per cold start.

Every name the functions read lives here, so the CDK stack, the local stack and the README agree.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from engagement import tables

# Secrets: a Secrets Manager ARN when deployed, or the plain value locally.
GITHUB_WEBHOOK_SECRET = "GITHUB_WEBHOOK_SECRET"
DISCOURSE_WEBHOOK_SECRET = "DISCOURSE_WEBHOOK_SECRET"
HUBSPOT_TOKEN = "HUBSPOT_TOKEN"
SALESFORCE_CREDENTIALS = "SALESFORCE_CREDENTIALS"  # JSON: login_url, client_id, client_secret
HUBSPOT_CLIENT_SECRET = "HUBSPOT_CLIENT_SECRET"  # the app's client secret: signs webhook deliveries (v3)
SLACK_WEBHOOK_URL = "SLACK_WEBHOOK_URL"  # an incoming webhook URL is itself a credential
SLACK_SIGNING_SECRET = "SLACK_SIGNING_SECRET"
SLACK_BOT_TOKEN = "SLACK_BOT_TOKEN"  # optional: with it, users.info supplies Slack members' emails
DISCORD_PUBLIC_KEY = "DISCORD_PUBLIC_KEY"  # the application's Ed25519 public key (hex), kept like a secret
BEVY_WEBHOOK_SECRET = "BEVY_WEBHOOK_SECRET"
# JSON object of source name -> Standard Webhooks secret (`whsec_...`) for POST /events.
EVENTS_SOURCE_SECRETS = "EVENTS_SOURCE_SECRETS"
ADMIN_API_TOKEN = "ADMIN_API_TOKEN"  # bearer token of the identity admin API (/admin/...)
SECRET_ARN_SUFFIX = "_ARN"

HUBSPOT_BASE_URL = "HUBSPOT_BASE_URL"
CRM_PROVIDER = "CRM_PROVIDER"
OUTBOX_PATH = "OUTBOX_PATH"
CONFIG_PARAMETER = "ENGAGEMENT_CONFIG_PARAMETER"
CONFIG_FILE = "ENGAGEMENT_CONFIG_FILE"
MAX_BODY_BYTES = "MAX_BODY_BYTES"
RAW_RETENTION_DAYS = "RAW_RETENTION_DAYS"
HUBSPOT_CALLS_PER_10S = "HUBSPOT_CALLS_PER_10S"
HUBSPOT_CALLS_PER_SECOND = "HUBSPOT_CALLS_PER_SECOND"
HUBSPOT_SEARCH_PER_SECOND = "HUBSPOT_SEARCH_PER_SECOND"
HUBSPOT_PLAN_PROPERTY = "HUBSPOT_PLAN_PROPERTY"
HUBSPOT_WEBHOOK_URL = "HUBSPOT_WEBHOOK_URL"

DEFAULT_HUBSPOT_BASE_URL = "https://api.hubapi.com"
# Lambda refuses synchronous invocations whose event exceeds 6 MB, so a larger body can never
# reach the function; the default keeps us just under that and answers 413 with a reason.
DEFAULT_MAX_BODY_BYTES = 6_000_000
DEFAULT_RAW_RETENTION_DAYS = 90
DEFAULT_OUTBOX_PATH = ".engagement/outbox.jsonl"
# HubSpot's documented limits for a private app on the Free/Starter tier: 100 requests per 10 seconds
# (Professional and Enterprise: 190), and 4 requests per second for the CRM search endpoints. Raise them
# per account; 429s are still honoured if another app shares the budget.
DEFAULT_HUBSPOT_CALLS_PER_10S = 100
DEFAULT_HUBSPOT_CALLS_PER_SECOND = 10
DEFAULT_HUBSPOT_SEARCH_PER_SECOND = 4
CRM_PROVIDERS = ("hubspot", "salesforce", "outbox")


class SettingsError(ValueError):
    """An environment variable is missing or has a value the functions cannot use."""


@dataclass(frozen=True)
class Settings:
    members_table: str
    events_table: str
    identities_table: str
    raw_table: str
    max_body_bytes: int
    raw_retention_days: int
    crm_provider: str
    hubspot_base_url: str
    outbox_path: str
    cursors_table: str = tables.CURSORS.default_name
    outcomes_table: str = tables.OUTCOMES.default_name
    sync_table: str = tables.SYNC.default_name
    audit_table: str = tables.AUDIT.default_name
    hubspot_calls_per_10s: int = DEFAULT_HUBSPOT_CALLS_PER_10S
    hubspot_calls_per_second: int = DEFAULT_HUBSPOT_CALLS_PER_SECOND
    hubspot_search_per_second: int = DEFAULT_HUBSPOT_SEARCH_PER_SECOND
    hubspot_plan_property: str | None = None
    hubspot_webhook_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if env is None else env
        provider = env.get(CRM_PROVIDER) or ("hubspot" if _has_secret(env, HUBSPOT_TOKEN) else "outbox")
        if provider not in CRM_PROVIDERS:
            raise SettingsError(f"{CRM_PROVIDER} must be one of {', '.join(CRM_PROVIDERS)}, not {provider!r}")
        return cls(
            members_table=env.get(tables.MEMBERS.env_var, tables.MEMBERS.default_name),
            events_table=env.get(tables.EVENTS.env_var, tables.EVENTS.default_name),
            identities_table=env.get(tables.IDENTITIES.env_var, tables.IDENTITIES.default_name),
            raw_table=env.get(tables.RAW.env_var, tables.RAW.default_name),
            max_body_bytes=_positive_int(env, MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES),
            raw_retention_days=_positive_int(env, RAW_RETENTION_DAYS, DEFAULT_RAW_RETENTION_DAYS),
            crm_provider=provider,
            hubspot_base_url=env.get(HUBSPOT_BASE_URL, DEFAULT_HUBSPOT_BASE_URL).rstrip("/"),
            outbox_path=env.get(OUTBOX_PATH, DEFAULT_OUTBOX_PATH),
            cursors_table=env.get(tables.CURSORS.env_var, tables.CURSORS.default_name),
            outcomes_table=env.get(tables.OUTCOMES.env_var, tables.OUTCOMES.default_name),
            sync_table=env.get(tables.SYNC.env_var, tables.SYNC.default_name),
            audit_table=env.get(tables.AUDIT.env_var, tables.AUDIT.default_name),
            hubspot_calls_per_10s=_positive_int(env, HUBSPOT_CALLS_PER_10S, DEFAULT_HUBSPOT_CALLS_PER_10S),
            hubspot_calls_per_second=_positive_int(env, HUBSPOT_CALLS_PER_SECOND, DEFAULT_HUBSPOT_CALLS_PER_SECOND),
            hubspot_search_per_second=_positive_int(env, HUBSPOT_SEARCH_PER_SECOND, DEFAULT_HUBSPOT_SEARCH_PER_SECOND),
            hubspot_plan_property=env.get(HUBSPOT_PLAN_PROPERTY) or None,
            hubspot_webhook_url=env.get(HUBSPOT_WEBHOOK_URL) or None,
        )


def _has_secret(env: dict[str, str], name: str) -> bool:
    return bool(env.get(name) or env.get(name + SECRET_ARN_SUFFIX))


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, not {value}")
    return value


# Salesforce (CRM_PROVIDER=salesforce): everything but the credentials, which are a secret.
SALESFORCE_API_VERSION = "SALESFORCE_API_VERSION"
SALESFORCE_OBJECT = "SALESFORCE_OBJECT"
SALESFORCE_EXTERNAL_ID_FIELD = "SALESFORCE_EXTERNAL_ID_FIELD"
SALESFORCE_EXTERNAL_ID_SOURCE = "SALESFORCE_EXTERNAL_ID_SOURCE"
SALESFORCE_DUPLICATE_RULE_HEADER = "SALESFORCE_DUPLICATE_RULE_HEADER"
SALESFORCE_LEAD_COMPANY = "SALESFORCE_LEAD_COMPANY"
SALESFORCE_STATUS_FIELD = "SALESFORCE_STATUS_FIELD"
SALESFORCE_PLAN_FIELD = "SALESFORCE_PLAN_FIELD"
SALESFORCE_CURRENCY_FIELD = "SALESFORCE_CURRENCY_FIELD"
SALESFORCE_PULL_INITIAL_DAYS = "SALESFORCE_PULL_INITIAL_DAYS"

DEFAULT_SALESFORCE_API_VERSION = "66.0"
SALESFORCE_OBJECTS = ("Contact", "Lead")
SALESFORCE_EXTERNAL_ID_SOURCES = ("member_id", "email")
# Where the pulled status comes from when not configured: the Contact's Account type ("Customer - Direct", ...)
# or the Lead's own status ("Working - Contacted", ...), both standard fields.
DEFAULT_SALESFORCE_STATUS_FIELD = {"Contact": "Account.Type", "Lead": "Status"}
DEFAULT_SALESFORCE_PULL_INITIAL_DAYS = 30
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
_API_VERSION = re.compile(r"^v?(\d{2,3}\.\d)$")
_DUPLICATE_RULE_OPTION = r"(allowSave|includeRecordDetails|runAsCurrentUser)=(true|false)"
_DUPLICATE_RULE_HEADER = re.compile(rf"^{_DUPLICATE_RULE_OPTION}(\s*,\s*{_DUPLICATE_RULE_OPTION})*$")


@dataclass(frozen=True)
class SalesforceSettings:
    api_version: str  # "66.0"
    sobject: str  # Contact or Lead
    external_id_field: str
    external_id_source: str  # member_id or email
    duplicate_rule_header: str | None  # the value of Sforce-Duplicate-Rule-Header, e.g. "allowSave=true"
    lead_company: str
    status_field: str
    plan_field: str | None
    currency_field: str | None
    pull_initial_days: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SalesforceSettings:
        env = dict(os.environ) if env is None else env
        version = env.get(SALESFORCE_API_VERSION) or DEFAULT_SALESFORCE_API_VERSION
        matched = _API_VERSION.match(version.strip())
        if not matched:
            raise SettingsError(f"{SALESFORCE_API_VERSION} must look like 66.0, not {version!r}")
        sobject = env.get(SALESFORCE_OBJECT) or "Contact"
        if sobject not in SALESFORCE_OBJECTS:
            raise SettingsError(f"{SALESFORCE_OBJECT} must be one of {', '.join(SALESFORCE_OBJECTS)}, not {sobject!r}")
        source = env.get(SALESFORCE_EXTERNAL_ID_SOURCE) or "member_id"
        if source not in SALESFORCE_EXTERNAL_ID_SOURCES:
            raise SettingsError(
                f"{SALESFORCE_EXTERNAL_ID_SOURCE} must be one of {', '.join(SALESFORCE_EXTERNAL_ID_SOURCES)}, "
                f"not {source!r}"
            )
        header = (env.get(SALESFORCE_DUPLICATE_RULE_HEADER) or "").strip() or None
        if header and not _DUPLICATE_RULE_HEADER.match(header):
            raise SettingsError(
                f"{SALESFORCE_DUPLICATE_RULE_HEADER} must be like 'allowSave=true, includeRecordDetails=true', "
                f"not {header!r}"
            )
        return cls(
            api_version=matched.group(1),
            sobject=sobject,
            external_id_field=_api_name(env, SALESFORCE_EXTERNAL_ID_FIELD, "Community_Member_Id__c"),
            external_id_source=source,
            duplicate_rule_header=header,
            lead_company=env.get(SALESFORCE_LEAD_COMPANY) or "Community",
            status_field=_api_name(env, SALESFORCE_STATUS_FIELD, DEFAULT_SALESFORCE_STATUS_FIELD[sobject]),
            plan_field=_api_name(env, SALESFORCE_PLAN_FIELD, "") or None,
            currency_field=_api_name(env, SALESFORCE_CURRENCY_FIELD, "") or None,
            pull_initial_days=_positive_int(env, SALESFORCE_PULL_INITIAL_DAYS, DEFAULT_SALESFORCE_PULL_INITIAL_DAYS),
        )


def _api_name(env: dict[str, str], name: str, default: str) -> str:
    """A Salesforce field API name (optionally one relationship deep, `Account.Type`); it ends up in SOQL."""
    value = (env.get(name) or default).strip()
    if value and not _API_NAME.match(value):
        raise SettingsError(f"{name} must be a Salesforce field API name like Community_Member_Id__c, not {value!r}")
    return value
