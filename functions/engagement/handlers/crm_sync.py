"""Member table stream -> CRM: push score and tier changes, report failed records by sequence number.

The whole batch is turned into one list of changes (newest image per member) and pushed in as
few calls as the CRM's batch limit allows; then Powertools' batch processor walks the records
and fails exactly those whose member did not land, so Lambda retries from the first of them
and, after the configured retries, hands them to the failure queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer

from engagement.adapters.config_source import current_taxonomy
from engagement.adapters.secrets import get_secret
from engagement.domain.crm import MemberChange, Skipped, change_from_images, latest_per_member
from engagement.handlers.errors import NotConfigured
from engagement.observability import logger, metrics
from engagement.settings import HUBSPOT_TOKEN, Settings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
_deserializer = TypeDeserializer()
_crm: Any = None


class SyncFailed(Exception):
    """The CRM did not take this member's change; the record is retried."""


def crm_adapter(settings: Settings) -> Any:
    """The configured CRM: HubSpot with its token, Salesforce with its credentials, or the local outbox file."""
    if settings.crm_provider == "salesforce":
        from engagement.adapters.salesforce import salesforce_from_env

        return salesforce_from_env()
    if settings.crm_provider == "hubspot":
        from engagement.adapters.hubspot import HubSpot

        token = get_secret(HUBSPOT_TOKEN)
        if not token:
            raise NotConfigured("CRM_PROVIDER is hubspot but no HubSpot token is configured (HUBSPOT_TOKEN)")
        return HubSpot(token, settings.hubspot_base_url)
    from engagement.adapters.outbox import Outbox

    return Outbox(settings.outbox_path)


def _image(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    image = (record.get("dynamodb") or {}).get(name)
    return {k: _deserializer.deserialize(v) for k, v in image.items()} if image else None


def sync(event: dict[str, Any], context: Any, crm: Any) -> dict[str, Any]:
    """Push the batch's changes through `crm` and build the partial batch response."""
    taxonomy = current_taxonomy()
    changes: list[MemberChange] = []
    for record in event.get("Records", []):
        outcome = change_from_images(_image(record, "OldImage"), _image(record, "NewImage"), taxonomy)
        if isinstance(outcome, Skipped):
            logger.info("member not pushed", extra={"member_id": outcome.member_id, "reason": outcome.reason})
        elif outcome is not None:
            changes.append(outcome)

    latest = latest_per_member(changes, taxonomy)
    failed: dict[str, str] = {}
    if latest:
        result = crm.push(latest)
        failed = result.failed
        logger.info(
            "crm push",
            extra={"members": len(latest), "pushed": len(result.pushed), "failed": len(failed), "calls": result.calls},
        )
        metrics.add_metric(name="CrmUpdates", unit="Count", value=len(result.pushed))
        metrics.add_metric(name="CrmFailures", unit="Count", value=len(failed))
        if failed:
            # The reason per member (e.g. Salesforce's DUPLICATES_DETECTED), which the failure queue does not carry.
            logger.warning("crm push failures", extra={"reasons": dict(list(failed.items())[:50])})

    def record_handler(record: DynamoDBRecord) -> None:
        keys = (record.raw_event.get("dynamodb") or {}).get("Keys") or {}
        member_id = (keys.get("member_id") or {}).get("S")
        if member_id in failed:
            raise SyncFailed(f"member {member_id}: {failed[member_id]}")

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _crm
    _crm = _crm or crm_adapter(Settings.from_env())
    return sync(event, context, _crm)
