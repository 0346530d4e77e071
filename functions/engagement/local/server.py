"""A local stand-in for API Gateway: each HTTP request becomes the REST API proxy event.

The routes are the deployed API's: `POST /webhooks/{platform}`, `POST /events`, and any method under `/admin/`
(the identity admin API, `/admin/{proxy+}`). Each request is handed to the same `lambda_handler` the deployed
function runs, with the event shape API Gateway (v1, Lambda proxy integration) delivers, and its response is
written back unchanged.
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
from urllib.parse import parse_qs, unquote, urlsplit

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


ADMIN_PREFIX = "/admin/"
ADMIN_RESOURCE = "/admin/{proxy+}"


def admin_route() -> tuple[str, Handler]:
    from engagement.handlers import identity_admin

    return "IdentityAdminFunction", identity_admin.lambda_handler


def proxy_event(
    method: str, path: str, headers: dict[str, list[str]], body: bytes, source_ip: str, host: str
) -> dict[str, Any]:
    """The event API Gateway's REST API hands a Lambda proxy integration for this request.

    `path` may carry a query string; under /admin/ the resource is the greedy `{proxy+}` and the rest of the path
    (still percent-encoded, as API Gateway leaves `path`; decoded in `pathParameters`) is its parameter.
    """
    parts = urlsplit(path)
    path = parts.path
    query = parse_qs(parts.query, keep_blank_values=True) or None
    resource, parameters = path, None
    if path.startswith(ADMIN_PREFIX):
        resource, parameters = ADMIN_RESOURCE, {"proxy": unquote(path.removeprefix(ADMIN_PREFIX))}
    try:
        text, is_base64 = (body.decode("utf-8"), False) if body else (None, False)
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in headers.items()},
        "multiValueHeaders": headers,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query,
        "pathParameters": parameters,
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
            "resourcePath": resource,
            "stage": "local",
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def make_server(
    port: int,
    routes: dict[str, tuple[str, Handler]] | None = None,
    host: str = "127.0.0.1",
    admin: tuple[str, Handler] | None = None,
) -> ThreadingHTTPServer:
    """Serve `routes` (POST, exact paths; the deployed webhooks by default) and `admin` (any method under /admin/;
    the identity admin API by default, when `routes` is the default too)."""
    if routes is None:
        routes, admin = webhook_routes(), admin or admin_route()
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

        def _handle(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            route = admin if admin is not None and path.startswith(ADMIN_PREFIX) else None
            if route is None and method == "POST":
                route = routes.get(path)
            if route is None:
                if method != "POST" and path in routes:
                    self._json(405, {"message": "webhooks are delivered with POST"})
                else:
                    known = [*routes, *([f"{ADMIN_PREFIX}..."] if admin is not None else [])]
                    self._json(404, {"message": f"no route for {method} {self.path}; try {', '.join(known)}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > API_GATEWAY_MAX_BYTES:
                self._json(413, {"message": "Request Too Long"})
                return
            body = self.rfile.read(length) if length else b""
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name, []).append(value)
            event = proxy_event(method, self.path, headers, body, self.client_address[0], self.headers.get("Host", ""))
            function_name, handler = route
            with lock:
                response = handler(event, LambdaContext(function_name))
            payload = response.get("body") or ""
            raw = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode("utf-8")
            self._send(int(response.get("statusCode", 200)), raw, dict(response.get("headers") or {}))

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

    return ThreadingHTTPServer((host, port), WebhookRequestHandler)
