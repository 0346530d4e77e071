"""The local stack: a DynamoDB endpoint, the project's tables, and the stream feeding CRM sync.

The embedded endpoint is moto in server mode (real HTTP, real stream records). Any other
DynamoDB-compatible endpoint is used instead when `AWS_ENDPOINT_URL_DYNAMODB` (or
`AWS_ENDPOINT_URL`) is set. `engagement serve` records its endpoint in `.engagement/local.json`
so the other commands find the same data while it runs.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engagement import tables

HOME_ENV = "ENGAGEMENT_HOME"
STATE_NAME = "local.json"
LOCAL_SECRETS = {
    # The secret the bundled sample events in events/ are signed with; a real secret wins when set.
    "GITHUB_WEBHOOK_SECRET": "engagement-local-secret",
    "DISCOURSE_WEBHOOK_SECRET": "engagement-local-secret",
    "HUBSPOT_CLIENT_SECRET": "engagement-local-secret",
    "SLACK_SIGNING_SECRET": "engagement-local-secret",
    "BEVY_WEBHOOK_SECRET": "engagement-local-secret",
    "ADMIN_API_TOKEN": "engagement-local-secret",  # Authorization: Bearer ... of the local /admin API
    # The public half of the Ed25519 key whose seed is sha256("engagement-local-secret") (local/signing.py).
    "DISCORD_PUBLIC_KEY": "22ecac7adc14b743bcd9477bf1824c8d8389a2cd91f2bdedc788832430cbe57e",
    # Source `local-script` for POST /events: whsec_ + base64("engagement-local-secret").
    "EVENTS_SOURCE_SECRETS": '{"local-script": "whsec_ZW5nYWdlbWVudC1sb2NhbC1zZWNyZXQ="}',
}
AWS_DEFAULTS = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    # Recent botocore would otherwise call an account-based endpoint that local servers lack.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def atomic_moto_server() -> Any:
    """moto in server mode on a free port of 127.0.0.1, answering one request at a time.

    DynamoDB applies each request atomically. moto does not under concurrency: a transaction
    snapshots whole tables and, when cancelled, restores the snapshot, undoing writes that other
    requests made meanwhile, and its condition checks race. Serializing requests gives back
    DynamoDB's per-request atomicity, so concurrent clients (threads, `serve` beside `recalc`)
    see what they would see in AWS. Connections are still served on many threads.
    """
    import logging
    import threading

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.server import MotoRequestHandler
    from werkzeug.serving import make_server

    # moto's web server logs every request; the stack's users only care about failures.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    class AtomicMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            lock = threading.Lock()

            def one_at_a_time(environ: dict[str, Any], start_response: Any) -> Any:
                with lock:
                    return list(app(environ, start_response))

            self._server = make_server(
                self._ip_address, self._port, one_at_a_time, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)


def home() -> Path:
    return Path(os.environ.get(HOME_ENV, ".engagement"))


def apply_local_environment(secrets: bool = True) -> None:
    """Region, dummy credentials and (optionally) the sample signing secrets, unless already set."""
    for name, value in AWS_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if secrets:
        for name, value in LOCAL_SECRETS.items():
            if not os.environ.get(name) and not os.environ.get(name + "_ARN"):
                os.environ[name] = value


def configured_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=0.5):
            return True
    except OSError:
        return False


def running_endpoint() -> str | None:
    """The endpoint of a running `engagement serve`, if one is up."""
    state = home() / STATE_NAME
    try:
        endpoint = json.loads(state.read_text())["endpoint"]
    except (OSError, ValueError, KeyError):
        return None
    return endpoint if _reachable(endpoint) else None


class LocalStack:
    """A DynamoDB endpoint with the project's tables, started or found."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self._server: Any = None

    @property
    def embedded(self) -> bool:
        return self._server is not None

    def start(self, prefer_running: bool = True) -> LocalStack:
        apply_local_environment()
        self.endpoint = self.endpoint or configured_endpoint() or (running_endpoint() if prefer_running else None)
        if self.endpoint is None:
            self._server = atomic_moto_server()
            self._server.start()
            host, port = self._server.get_host_and_port()
            self.endpoint = f"http://{host}:{port}"
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = self.endpoint
        os.environ.setdefault("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", self.endpoint)
        self.ensure_tables()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, service: str = "dynamodb") -> Any:
        import boto3

        endpoint = (
            self.endpoint
            if service == "dynamodb"
            else (os.environ.get("AWS_ENDPOINT_URL_DYNAMODB_STREAMS") or self.endpoint)
        )
        return boto3.client(service, endpoint_url=endpoint, region_name=os.environ["AWS_DEFAULT_REGION"])

    def ensure_tables(self) -> None:
        client = self.client()
        existing = set(client.list_tables().get("TableNames", []))
        for spec in tables.ALL_TABLES:
            name = os.environ.get(spec.env_var, spec.default_name)
            if name not in existing:
                client.create_table(**table_definition(spec, name))
                client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
                if spec.ttl_attribute:
                    client.update_time_to_live(
                        TableName=name,
                        TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
                    )

    def write_state(self) -> Path:
        path = home() / STATE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"endpoint": self.endpoint, "pid": os.getpid()}))
        return path

    def clear_state(self) -> None:
        path = home() / STATE_NAME
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


def table_definition(spec: tables.TableSpec, name: str) -> dict[str, Any]:
    """CreateTable arguments for a spec: the same keys, indexes and stream as the CDK stack."""
    attributes = {spec.partition_key: "S"}
    keys = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
    if spec.sort_key:
        attributes[spec.sort_key] = spec.sort_key_type
        keys.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
    definition: dict[str, Any] = {"TableName": name, "KeySchema": keys, "BillingMode": "PAY_PER_REQUEST"}
    indexes = []
    for index in spec.indexes:
        attributes[index.partition_key] = "S"
        index_keys = [{"AttributeName": index.partition_key, "KeyType": "HASH"}]
        if index.sort_key:
            attributes[index.sort_key] = "S"
            index_keys.append({"AttributeName": index.sort_key, "KeyType": "RANGE"})
        indexes.append({"IndexName": index.name, "KeySchema": index_keys, "Projection": {"ProjectionType": "ALL"}})
    if indexes:
        definition["GlobalSecondaryIndexes"] = indexes
    if spec.stream:
        definition["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec.stream}
    definition["AttributeDefinitions"] = [{"AttributeName": k, "AttributeType": v} for k, v in attributes.items()]
    return definition


class LambdaContext:
    """Enough of Lambda's context object for Powertools and the handlers."""

    def __init__(self, function_name: str, timeout_seconds: float = 900) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class StreamPump:
    """Reads the member table's stream and hands batches to a handler, as the event source mapping does.

    Batches of up to `batch_size` records in Lambda's event shape; records a batch reports as
    failed (by `SequenceNumber`) are retried up to `retries` times, then written to the failure
    file (the local stand-in for the SQS failure destination).
    """

    def __init__(
        self,
        stack: LocalStack,
        handler: Callable[[dict[str, Any], Any], Any],
        batch_size: int = 100,
        retries: int = 2,
        from_start: bool = True,
    ) -> None:
        self.stack = stack
        self.handler = handler
        self.batch_size = batch_size
        self.retries = retries
        self.streams = stack.client("dynamodbstreams")
        table = os.environ.get(tables.MEMBERS.env_var, tables.MEMBERS.default_name)
        self.stream_arn = stack.client().describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.region = os.environ["AWS_DEFAULT_REGION"]
        self.iterator_type = "TRIM_HORIZON" if from_start else "LATEST"
        self.iterators: dict[str, str | None] = {}
        self.delivered = 0

    def _refresh_shards(self) -> None:
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self.iterators:
                self.iterators[shard_id] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=self.iterator_type
                )["ShardIterator"]

    def _read(self) -> Iterator[dict[str, Any]]:
        self._refresh_shards()
        for shard_id, iterator in list(self.iterators.items()):
            while iterator:
                page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                records = page.get("Records", [])
                yield from (self._lambda_shape(r) for r in records)
                iterator = page.get("NextShardIterator")
                if not records:
                    break
            self.iterators[shard_id] = iterator

    def _lambda_shape(self, record: dict[str, Any]) -> dict[str, Any]:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        return {
            "eventID": record.get("eventID"),
            "eventName": record.get("eventName"),
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", self.region),
            "dynamodb": dynamodb,
            "eventSourceARN": self.stream_arn,
        }

    def drain(self) -> int:
        """Deliver every record written so far; returns how many records were delivered."""
        records = list(self._read())
        for start in range(0, len(records), self.batch_size):
            self._deliver(records[start : start + self.batch_size])
        self.delivered += len(records)
        return len(records)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        for _ in range(self.retries + 1):
            response = self.handler({"Records": batch}, LambdaContext("CrmSyncFunction")) or {}
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            if not failed:
                return
            # Lambda retries from the first failed record onwards, keeping stream order.
            first = next(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed)
            batch = batch[first:]
        failures = home() / "failures.jsonl"
        failures.parent.mkdir(parents=True, exist_ok=True)
        with failures.open("a", encoding="utf-8") as handle:
            for record in batch:
                handle.write(json.dumps(record, default=str) + "\n")
