"""/admin/...: the operator's identity commands as a small authenticated JSON API (for the CRM or an internal tool).

Every request carries `Authorization: Bearer <ADMIN_API_TOKEN>` (compared in constant time); the audit trail
names the caller `api:<X-Actor>` (or `api:admin`). Identities are written as on the command line
(`github:583231`, `email:a@b.c`, `handle:github:octocat`, a member id), percent-encoded in paths
(`discourse:forum.example.com%2F31`).

    GET  /admin/members/{ref}              the person: members, identities, score, tier, prospect or customer
    GET  /admin/members/{ref}/history      the audit trail, oldest first
    POST /admin/members/merge              {"member", "into", "why"?}
    POST /admin/members/unmerge            {"member", "why"?}
    POST /admin/identities/link            {"member", "identity", "why"?}
    POST /admin/identities/unlink          {"member", "identity", "why"?}
    GET  /admin/identities/suggestions     pairs that may be one person, with confidence and reasons
    POST /admin/forget                     {"identity", "why"?}: erase the person, clearing the CRM first

Bodies are validated by hand (no pydantic on the Lambda path): each refusal names the field.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from engagement.adapters.secrets import get_secret
from engagement.domain import scoring
from engagement.domain.identity import IdentityError, IdentityRef, parse_ref
from engagement.handlers.errors import BadRequest, NotConfigured, PayloadTooLarge, Unauthorized, WebhookError
from engagement.handlers.http import WebhookRequest, json_response
from engagement.observability import logger, metrics
from engagement.settings import ADMIN_API_TOKEN

MAX_BODY_BYTES = 64 * 1024
MAX_ACTOR_CHARS = 100
MAX_WHY_CHARS = 1000
DEFAULT_ACTOR = "admin"
ACTOR_HEADER = "X-Actor"
# IdentityStore's messages for an identity or member that does not exist (answered 404, not 400).
NOT_FOUND_PREFIXES = ("no member", "no account")


class NotFound(WebhookError):
    status = 404


class MethodNotAllowed(WebhookError):
    status = 405


class CrmUnavailable(WebhookError):
    status = 502


def _current_taxonomy() -> Any:
    from engagement.adapters.config_source import current_taxonomy

    return current_taxonomy()


def _configured_crm() -> Any:
    from engagement.handlers.crm_sync import crm_adapter
    from engagement.settings import Settings

    return crm_adapter(Settings.from_env())


@dataclass
class AdminDependencies:
    """What the admin API talks to; built once per cold start, replaced in tests."""

    store: Any  # adapters.dynamo.Store
    taxonomy: Callable[[], Any] = _current_taxonomy
    clock: Callable[[], datetime] = scoring.utc_now
    crm: Callable[[], Any] = _configured_crm  # the CRM adapter forget clears first (crm_sync.crm_adapter)
    secret: Callable[[str], str | None] = get_secret


def default_dependencies() -> AdminDependencies:
    from engagement.handlers import ingest  # deferred: boto3 and the store load on the first request only

    return AdminDependencies(store=ingest.default_dependencies().store)


app = APIGatewayRestResolver()
_deps: AdminDependencies | None = None


def _dependencies() -> AdminDependencies:
    global _deps
    _deps = _deps or default_dependencies()
    return _deps


def _people() -> Any:
    from engagement.adapters.identity_store import IdentityStore

    return IdentityStore(_dependencies().store)


def _actor() -> str:
    return str(app.context["actor"])


# Requests -------------------------------------------------------------------------------------------


def _gate(event: dict[str, Any], secret: Callable[[str], str | None]) -> str:
    """Authenticate the request, check its size and caller name; returns the audit actor.

    Raises:
        WebhookError: a 401 (no or wrong token), 413 (body over 64 KB) or 400 (unreadable body, bad X-Actor).
        NotConfigured: no token is configured.
    """
    request = WebhookRequest.from_api_gateway(event)
    token = secret(ADMIN_API_TOKEN)
    if not token:
        raise NotConfigured(f"the admin API token is not configured ({ADMIN_API_TOKEN})")
    scheme, _, given = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("unauthorized", "send the admin token as 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        raise Unauthorized("unauthorized", "the admin token is not valid")

    if len(request.body) > MAX_BODY_BYTES:
        raise PayloadTooLarge("too_large", f"the body is {len(request.body)} bytes; the limit is {MAX_BODY_BYTES}")
    name = request.header(ACTOR_HEADER) or DEFAULT_ACTOR
    if len(name) > MAX_ACTOR_CHARS or not name.isprintable():
        raise BadRequest("invalid_actor", f"{ACTOR_HEADER} must be at most {MAX_ACTOR_CHARS} printable characters")
    return f"api:{name}"


def _path_ref(text: str) -> IdentityRef:
    return parse_ref(unquote(text))


def _body(required: tuple[str, ...], optional: tuple[str, ...] = ("why",)) -> dict[str, Any]:
    """The JSON object body with exactly the named string fields.

    Raises:
        BadRequest: not JSON, not an object, a required field missing or empty, an unknown field, a non-string.
    """
    raw = app.current_event.decoded_body or ""
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise BadRequest("invalid_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("invalid_body", "the body must be a JSON object")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        expected = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
        raise BadRequest("unknown_field", f"unknown field(s): {', '.join(unknown)}; expected {expected}")
    for name in required:
        if name not in body or body[name] is None:
            raise BadRequest("missing_field", f"the field {name!r} is required")
    for name, value in body.items():
        if value is not None and not isinstance(value, str):
            raise BadRequest("invalid_field", f"the field {name!r} must be a string")
        if name in required and not value.strip():
            raise BadRequest("invalid_field", f"the field {name!r} must not be empty")
    if len(body.get("why") or "") > MAX_WHY_CHARS:
        raise BadRequest("invalid_field", f"the field 'why' must be at most {MAX_WHY_CHARS} characters")
    return body


def _field_ref(body: dict[str, Any], name: str, member_ok: bool = True) -> IdentityRef:
    try:
        return parse_ref(body[name], member_ok=member_ok)
    except IdentityError as error:
        raise BadRequest("invalid_field", f"the field {name!r}: {error}") from None


# Routes ---------------------------------------------------------------------------------------------


POST_ONLY = ("merge", "unmerge")  # /admin/members/merge and /unmerge, which a GET would read as an identity


@app.get("/admin/members/<ref>")
def show_member(ref: str) -> dict[str, Any]:
    if ref in POST_ONLY:
        raise MethodNotAllowed("method_not_allowed", f"/admin/members/{ref} takes POST")
    return _people().show(_path_ref(ref))  # type: ignore[no-any-return]


@app.get("/admin/members/<ref>/history")
def member_history(ref: str) -> dict[str, Any]:
    return {"entries": _people().history(_path_ref(ref))}


@app.post("/admin/members/merge")
def merge_members() -> dict[str, Any]:
    body = _body(("member", "into"))
    first, into = _field_ref(body, "member"), _field_ref(body, "into")
    deps = _dependencies()
    return _changed("merge", _people().merge(first, into, _actor(), deps.clock(), deps.taxonomy(), why=body.get("why")))


@app.post("/admin/members/unmerge")
def unmerge_member() -> dict[str, Any]:
    body = _body(("member",))
    ref = _field_ref(body, "member")
    deps, people = _dependencies(), _people()
    result = people.unmerge(people.find(ref), _actor(), deps.clock(), deps.taxonomy(), why=body.get("why"))
    return _changed("unmerge", result)


@app.post("/admin/identities/link")
def link_identity() -> dict[str, Any]:
    body = _body(("member", "identity"))
    member, identity = _field_ref(body, "member"), _field_ref(body, "identity", member_ok=False)
    deps = _dependencies()
    return _changed("link", _people().link(member, identity, _actor(), deps.clock(), deps.taxonomy(), body.get("why")))


@app.post("/admin/identities/unlink")
def unlink_identity() -> dict[str, Any]:
    body = _body(("member", "identity"))
    member, identity = _field_ref(body, "member"), _field_ref(body, "identity", member_ok=False)
    deps = _dependencies()
    result = _people().unlink(member, identity, _actor(), deps.clock(), deps.taxonomy(), body.get("why"))
    return _changed("unlink", result)


@app.get("/admin/identities/suggestions")
def identity_suggestions() -> dict[str, Any]:
    found = _people().suggestions(_dependencies().taxonomy().identity)
    return {
        "suggestions": [
            {
                "first": s.first,
                "second": s.second,
                "confidence": s.confidence,
                "reasons": [{"rule": r.rule, "text": r.text} for r in s.reasons],
            }
            for s in found
        ]
    }


@app.post("/admin/forget")
def forget_person() -> dict[str, Any]:
    # No `why`: the audit record of a forgotten person must hold no personal data, so it takes no free text.
    body = _body(("identity",), optional=())
    ref = _field_ref(body, "identity")
    deps = _dependencies()
    crm = deps.crm()
    try:
        report = _people().forget(ref, _actor(), deps.clock(), crm=crm)
    except RuntimeError as error:  # forget's CRM step: nothing was deleted, the caller may simply retry
        raise CrmUnavailable("crm_failed", f"{error}; nothing was deleted, try again once the CRM answers") from None
    return _changed("forget", report.as_dict())


def _changed(operation: str, result: dict[str, Any]) -> dict[str, Any]:
    logger.info("identity changed", extra={"operation": operation, "actor": _actor()})
    metrics.add_metric(name="AdminIdentityChanges", unit=MetricUnit.Count, value=1)
    return result


# Errors, mapped in one place ------------------------------------------------------------------------


def _refusal(status: int, code: str, message: str) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"status": "refused", "error": code, "message": message},
    )


@app.exception_handler(WebhookError)
def _refused(error: WebhookError) -> Response:
    logger.warning("admin request refused", extra={"status": error.status, "code": error.code})
    return _refusal(error.status, error.code, error.message)


@app.exception_handler(IdentityError)
def _identity_refused(error: IdentityError) -> Response:
    # IdentityStore has no "not found" exception of its own; its messages for unknown identities and members
    # start with these words (engagement.adapters.identity_store.find).
    message = str(error)
    if message.startswith(NOT_FOUND_PREFIXES):
        return _refusal(404, "not_found", message)
    return _refusal(400, "identity_error", message)


@app.exception_handler(NotConfigured)
def _not_configured(error: NotConfigured) -> Response:
    logger.error("function not configured", extra={"reason": str(error)})
    return Response(
        status_code=500,
        content_type=content_types.APPLICATION_JSON,
        body={"status": "error", "error": "not_configured", "message": str(error)},
    )


@app.not_found
def _no_route(error: Exception) -> Response:
    method, path = app.current_event.http_method, app.current_event.path
    return _refusal(404, "no_route", f"no route {method} {path}")


def _as_proxy(response: Response) -> dict[str, Any]:
    return json_response(response.status_code, response.body)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="AdminRequests", unit=MetricUnit.Count, value=1)
    try:
        actor = _gate(event, _deps.secret if _deps else get_secret)
    except WebhookError as error:  # before any route runs: unauthenticated callers learn no routes
        return _as_proxy(_refused(error))
    except NotConfigured as error:
        return _as_proxy(_not_configured(error))
    logger.append_keys(actor=actor)
    app.append_context(actor=actor)
    return app.resolve(event, context)
