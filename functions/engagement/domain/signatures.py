"""Webhook signatures: HMAC-SHA256 over the raw body, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

SHA256_PREFIX = "sha256="


def hmac_sha256_hex(secret: str | bytes, message: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes) -> str:
    """The header value GitHub and Discourse send for `body`: `sha256=<hex digest>`."""
    return SHA256_PREFIX + hmac_sha256_hex(secret, body)


def verify(header_value: str, secret: str | bytes, body: bytes) -> bool:
    """Whether `header_value` (`sha256=<hex>`) signs exactly these body bytes with `secret`.

    The comparison takes the same time wherever the first difference is; a header without the
    `sha256=` prefix never verifies.
    """
    value = header_value.strip()
    if not value.lower().startswith(SHA256_PREFIX):
        return False
    expected = hmac_sha256_hex(secret, body)
    return hmac.compare_digest(value[len(SHA256_PREFIX) :].lower().encode("ascii", "replace"), expected.encode("ascii"))
