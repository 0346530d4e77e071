"""POST /webhooks/github: verify, map and store one GitHub delivery."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.domain import github
from engagement.handlers import ingest
from engagement.observability import logger, metrics
from engagement.settings import GITHUB_WEBHOOK_SECRET

PLATFORM = ingest.Platform(
    name=github.PLATFORM,
    secret_name=GITHUB_WEBHOOK_SECRET,
    signature_header="X-Hub-Signature-256",
    required_headers=("X-GitHub-Event", "X-GitHub-Delivery"),
    delivery_header="X-GitHub-Delivery",
    classify=lambda request, payload, taxonomy, received_at, store: github.classify(
        request.header("X-GitHub-Event") or "",
        request.header("X-GitHub-Delivery") or "",
        payload,
        taxonomy,
        received_at,
    ),
    decode=ingest.decode_json_or_form,
)
_deps: ingest.Dependencies | None = None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _deps
    _deps = _deps or ingest.default_dependencies()
    return ingest.handle(PLATFORM, event, _deps)
