"""Logger and metrics, made once and shared by every function."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

SERVICE = "engagement"
NAMESPACE = "CommunityEngagement"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
