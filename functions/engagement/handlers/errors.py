"""What a webhook sender did wrong, each with its HTTP status, mapped in one place."""

from __future__ import annotations


class WebhookError(Exception):
    """A request we refuse. `code` is stable for machines; `message` says what was wrong."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadRequest(WebhookError):
    status = 400


class Unauthorized(WebhookError):
    status = 401


class PayloadTooLarge(WebhookError):
    status = 413


class UnsupportedMediaType(WebhookError):
    status = 415


class NotConfigured(Exception):
    """Our own fault: a secret or setting the function needs is missing (answered 500; safe to retry)."""
