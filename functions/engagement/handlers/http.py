"""API Gateway events (REST v1 and HTTP API v2) as one neutral request, and JSON responses."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from engagement.handlers.errors import BadRequest


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook request with lower-cased header names and the body bytes exactly as sent."""

    headers: dict[str, str]
    body: bytes
    request_id: str | None

    @classmethod
    def from_api_gateway(cls, event: dict[str, Any]) -> WebhookRequest:
        """Read a REST API (v1) or HTTP API (v2) proxy event.

        Raises:
            BadRequest: the event says its body is base64 but it is not.
        """
        headers: dict[str, str] = {}
        for name, values in (event.get("multiValueHeaders") or {}).items():
            if values:
                headers[name.lower()] = ",".join(values)
        for name, value in (event.get("headers") or {}).items():
            if value is not None:
                headers[name.lower()] = value

        raw = event.get("body")
        if raw is None:
            body = b""
        elif event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("invalid_body", "the body is marked base64-encoded but is not valid base64") from None
        else:
            body = raw.encode("utf-8")
        context = event.get("requestContext") or {}
        return cls(headers=headers, body=body, request_id=context.get("requestId"))

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower())
        return value.strip() if value is not None and value.strip() else None

    @property
    def media_type(self) -> str:
        """The content type without parameters, lower-cased (`application/json`)."""
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Lambda proxy integration response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, default=str),
        "isBase64Encoded": False,
    }
