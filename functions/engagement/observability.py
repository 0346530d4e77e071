"""Logger and metrics, made once and shared by every function."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

SERVICE = "engagement"
# The stack sets POWERTOOLS_METRICS_NAMESPACE per stage (CommunityEngagement/prod); locally this default applies.
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "CommunityEngagement"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
