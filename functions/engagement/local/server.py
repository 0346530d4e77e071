"""A local stand-in for API Gateway: each HTTP request becomes the REST API proxy event.

Only `POST /webhooks/{platform}` and `POST /events` exist, as in the deployed API; each request is handed to the
same `lambda_handler` the deployed function runs, with the event shape API Gateway (v1, Lambda
proxy integration) delivers, and its response is written back unchanged.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engagement.local.stack import LambdaContext

# API Gateway's own payload limit for REST APIs.
API_GATEWAY_MAX_BYTES = 10 * 1024 * 1024
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def webhook_routes() -> dict[str, tuple[str, Handler]]:
    from engagement.handlers import discourse_webhook, github_webhook, hubspot_webhook
    from engagement.local.server_routes import community_routes

    return {
        "/webhooks/github": ("GithubWebhookFunction", github_webhook.lambda_handler),
        "/webhooks/discourse": ("DiscourseWebhookFunction", discourse_webhook.lambda_handler),
        **community_routes(),
        # Signed over the public URL HubSpot calls: set HUBSPOT_WEBHOOK_URL to it (e.g. a tunnel's URL).
        "/webhooks/hubspot": ("HubspotWebhookFunction", hubspot_webhook.lambda_handler),
    }


def proxy_event(
    method: str, path: str, headers: dict[str, list[str]], body: bytes, source_ip: str, host: str
) -> dict[str, Any]:
    """The event API Gateway's REST API hands a Lambda proxy integration for this request."""
    try:
        text, is_base64 = (body.decode("utf-8"), False) if body else (None, False)
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    request_id = str(uuid.uuid4())
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in headers.items()},
        "multiValueHeaders": headers,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "extendedRequestId": request_id,
            "httpMethod": method,
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", [None])[-1]},
            "path": f"/local{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": "local",
            "resourcePath": path,
            "stage": "local",
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def make_server(
    port: int, routes: dict[str, tuple[str, Handler]] | None = None, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    routes = routes if routes is not None else webhook_routes()
    # One delivery at a time, as a Lambda instance handles one event at a time.
    lock = threading.Lock()

    class WebhookRequestHandler(BaseHTTPRequestHandler):
        server_version = "engagement-local"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self._json(404, {"message": f"no route for POST {self.path}; try {', '.join(routes)}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > API_GATEWAY_MAX_BYTES:
                self._json(413, {"message": "Request Too Long"})
                return
            body = self.rfile.read(length) if length else b""
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name, []).append(value)
            event = proxy_event("POST", self.path, headers, body, self.client_address[0], self.headers.get("Host", ""))
            function_name, handler = route
            with lock:
                response = handler(event, LambdaContext(function_name))
            payload = response.get("body") or ""
            raw = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode("utf-8")
            self._send(int(response.get("statusCode", 200)), raw, dict(response.get("headers") or {}))

        def do_GET(self) -> None:  # noqa: N802
            self._json(405, {"message": "webhooks are delivered with POST"})

    return ThreadingHTTPServer((host, port), WebhookRequestHandler)
