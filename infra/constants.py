"""Construct ids, names, paths and context keys for the CDK app, in one place."""

from __future__ import annotations

from pathlib import Path

from infra import community_webhooks

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = PROJECT_ROOT / "functions"
REQUIREMENTS_FILE = FUNCTIONS_DIR / "requirements.txt"

# Stage selection and per-stage settings: infra/stages.py.


def stack_name(stage: str) -> str:
    return f"Engagement-{stage}"


def config_parameter_name(stage: str) -> str:
    return f"/engagement/{stage}/config-overrides"


SERVICE_NAME = "engagement"
LOG_LEVEL = "INFO"
METRICS_NAMESPACE = "CommunityEngagement"


def metrics_namespace(stage: str) -> str:
    """Custom metrics per stage (`CommunityEngagement/prod`), so dev traffic never trips prod's alarms."""
    return f"{METRICS_NAMESPACE}/{stage}"


# Where the `outbox` CRM provider writes when deployed: /tmp is the only writable path in Lambda.
LAMBDA_OUTBOX_PATH = "/tmp/engagement-outbox.jsonl"

# Lambda packaging: the function code asset leaves out what the layer or the local tooling carries.
CODE_EXCLUDE = ["engagement/local", "**/__pycache__", "*.pyc", "requirements.txt"]
# The layer asset's fingerprint covers requirements.txt only, so code changes do not publish a new layer.
LAYER_SOURCE_EXCLUDE = ["*", "!requirements.txt"]
LAYER_BUILD_IMAGE = "public.ecr.aws/sam/build-python3.13"
LAYER_PIP_PLATFORM = "manylinux2014_aarch64"
LAYER_PYTHON_VERSION = "3.13"
LAYER_DIR = "python"  # Lambda adds /opt/python to sys.path for Python layers.

# Construct ids.
TABLES_ID = "Tables"
SECRETS_ID = "Secrets"
GITHUB_SECRET_ID = "GithubWebhookSecret"
DISCOURSE_SECRET_ID = "DiscourseWebhookSecret"
HUBSPOT_SECRET_ID = "HubspotToken"
CONFIG_ID = "Config"
CONFIG_PARAMETER_ID = "ConfigOverrides"
LAMBDA_ASSETS_ID = "LambdaAssets"
DEPENDENCIES_LAYER_ID = "DependenciesLayer"
GITHUB_FUNCTION_ID = "GithubWebhookFunction"
DISCOURSE_FUNCTION_ID = "DiscourseWebhookFunction"
RECALC_FUNCTION_ID = "RecalcFunction"
CRM_SYNC_FUNCTION_ID = "CrmSyncFunction"
API_ID = "WebhookApi"
RECALC_SCHEDULE_ID = "RecalcSchedule"
CRM_SYNC_STREAM_ID = "CrmSyncStream"
CRM_SYNC_FAILURES_ID = "CrmSyncFailures"
MONITORING_ID = "Monitoring"
POLLERS_ID = "Pollers"
ALARM_TOPIC_ID = "AlarmTopic"
WAF_ID = "WebAcl"
SALESFORCE_ID = "Salesforce"
COMMUNITY_WEBHOOKS_ID = "CommunityWebhooks"

# Handlers.
GITHUB_HANDLER = "engagement.handlers.github_webhook.lambda_handler"
DISCOURSE_HANDLER = "engagement.handlers.discourse_webhook.lambda_handler"
RECALC_HANDLER = "engagement.handlers.recalc.lambda_handler"
CRM_SYNC_HANDLER = "engagement.handlers.crm_sync.lambda_handler"

# API paths.
WEBHOOKS_PATH = "webhooks"
GITHUB_PATH = "github"
DISCOURSE_PATH = "discourse"
GITHUB_WEBHOOK_PATH = f"/{WEBHOOKS_PATH}/{GITHUB_PATH}"
DISCOURSE_WEBHOOK_PATH = f"/{WEBHOOKS_PATH}/{DISCOURSE_PATH}"
# Stage-wide throttling, and per route (requests per second and burst). GitHub and Discourse deliver one
# request per event; 20/s sustained is far above a busy community and still caps a replay storm.
API_THROTTLE_RATE = 50
API_THROTTLE_BURST = 100
ROUTE_THROTTLE = {GITHUB_PATH: (20, 40), DISCOURSE_PATH: (20, 40), **community_webhooks.ROUTE_THROTTLE}
SIGNATURE_HEADERS = {
    GITHUB_PATH: "X-Hub-Signature-256",
    DISCOURSE_PATH: "X-Discourse-Event-Signature",
    **community_webhooks.SIGNATURE_HEADERS,
}

# Stream to CRM.
CRM_SYNC_BATCH_SIZE = 100
CRM_SYNC_BATCH_WINDOW_SECONDS = 5
CRM_SYNC_RETRY_ATTEMPTS = 5
CRM_SYNC_FAILURE_RETENTION_DAYS = 14

# Stack outputs.
GITHUB_WEBHOOK_URL_OUTPUT = "GithubWebhookUrl"
DISCOURSE_WEBHOOK_URL_OUTPUT = "DiscourseWebhookUrl"
API_URL_OUTPUT = "ApiUrl"
CRM_SYNC_FAILURE_QUEUE_URL_OUTPUT = "CrmSyncFailureQueueUrl"
GITHUB_SECRET_ARN_OUTPUT = "GithubWebhookSecretArn"
DISCOURSE_SECRET_ARN_OUTPUT = "DiscourseWebhookSecretArn"
HUBSPOT_SECRET_ARN_OUTPUT = "HubspotTokenSecretArn"
CONFIG_PARAMETER_OUTPUT = "ConfigParameterName"
ALARM_TOPIC_OUTPUT = "AlarmTopicArn"
DASHBOARD_OUTPUT = "DashboardName"
