"""The signature schemes besides GitHub's: Slack v0, Discord Ed25519, Standard Webhooks.

Each `check_*` function returns None when the request is authentic and otherwise raises
`SignatureRejected` with a stable code and a message for the sender. Every comparison of secret
material is constant-time; timestamps are compared with a clock the caller passes in, so tests can
place a request exactly 301 seconds away from "now".
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import datetime

from engagement.domain.signatures import hmac_sha256_hex

# Slack, Discord and the Standard Webhooks spec all use five minutes as the replay window.
REPLAY_WINDOW_SECONDS = 300
SLACK_VERSION = "v0"
STANDARD_WEBHOOKS_VERSION = "v1"
STANDARD_WEBHOOKS_SECRET_PREFIX = "whsec_"


class SignatureRejected(ValueError):
    """The request is not authentic (or no longer fresh); `code` is stable for machines."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_timestamp(raw: str | None, now: datetime, header: str, window: int = REPLAY_WINDOW_SECONDS) -> int:
    """The Unix-seconds timestamp of `header`, if it lies within `window` seconds of `now` either way.

    Raises:
        SignatureRejected: the header is missing, not whole seconds, or too far from now (`stale_timestamp`).
    """
    if raw is None:
        raise SignatureRejected("missing_timestamp", f"the {header} header is missing")
    text = raw.strip()
    if not text.isdigit() or len(text) > 12:
        raise SignatureRejected("bad_timestamp", f"the {header} header must be Unix seconds, not {text[:20]!r}")
    timestamp = int(text)
    drift = timestamp - now.timestamp()
    if abs(drift) > window:
        direction = "ahead of" if drift > 0 else "behind"
        raise SignatureRejected(
            "stale_timestamp",
            f"the {header} header is {abs(drift):.0f} s {direction} our clock; at most {window} s either way is "
            "accepted (a replayed or delayed request)",
        )
    return timestamp


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Slack-Signature` value for `body`: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = f"{SLACK_VERSION}:{timestamp}:".encode() + body
    return f"{SLACK_VERSION}=" + hmac_sha256_hex(signing_secret, base)


def check_slack(signing_secret: str, timestamp: str | None, signature: str | None, body: bytes, now: datetime) -> None:
    """Verify a Slack request (signing secret, version v0) over the raw body at `now`.

    Raises:
        SignatureRejected: missing headers, a timestamp outside the 5-minute window, or a mismatch.
    """
    if signature is None:
        raise SignatureRejected("missing_signature", "the X-Slack-Signature header is missing")
    check_timestamp(timestamp, now, "X-Slack-Request-Timestamp")
    assert timestamp is not None  # check_timestamp refused a missing one
    expected = slack_signature(signing_secret, timestamp.strip(), body)
    if not hmac.compare_digest(signature.strip().encode("ascii", "replace"), expected.encode("ascii")):
        raise SignatureRejected("bad_signature", "the X-Slack-Signature signature does not match the body")


def check_ed25519(
    public_key_hex: str, timestamp: str | None, signature_hex: str | None, body: bytes, now: datetime
) -> None:
    """Verify a Discord request: Ed25519 signature (hex) over `timestamp + body` with the app's public key.

    Discord publishes no replay window; we apply the same 5 minutes as Slack, since Discord signs
    each request when it sends it.

    Raises:
        SignatureRejected: missing headers, an old timestamp, malformed hex, or a signature that fails.
    """
    from nacl.exceptions import BadSignatureError  # deferred: only the Discord function loads libsodium
    from nacl.signing import VerifyKey

    if signature_hex is None:
        raise SignatureRejected("missing_signature", "the X-Signature-Ed25519 header is missing")
    check_timestamp(timestamp, now, "X-Signature-Timestamp")
    assert timestamp is not None
    try:
        key = VerifyKey(bytes.fromhex(public_key_hex.strip()))
        signature = bytes.fromhex(signature_hex.strip())
    except ValueError:
        raise SignatureRejected("bad_signature", "the X-Signature-Ed25519 header is not a hex signature") from None
    if len(signature) != 64:
        raise SignatureRejected("bad_signature", "the X-Signature-Ed25519 header is not a 64-byte signature")
    try:
        key.verify(timestamp.strip().encode("utf-8") + body, signature)
    except BadSignatureError:
        raise SignatureRejected("bad_signature", "the X-Signature-Ed25519 signature does not match the body") from None


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` + base64).

    Raises:
        ValueError: the secret is empty or not base64.
    """
    text = secret.strip()
    if text.startswith(STANDARD_WEBHOOKS_SECRET_PREFIX):
        text = text[len(STANDARD_WEBHOOKS_SECRET_PREFIX) :]
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("the Standard Webhooks secret is empty")
    return key


def standard_webhooks_signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """One `webhook-signature` entry: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    from standardwebhooks.webhooks import hmac_data  # the library's own HMAC; its verify has no injectable clock

    digest = hmac_data(standard_webhooks_key(secret), f"{message_id}.{timestamp}.".encode() + body)
    return f"{STANDARD_WEBHOOKS_VERSION}," + base64.b64encode(digest).decode("ascii")


def check_standard_webhooks(secret: str, headers: Mapping[str, str | None], body: bytes, now: datetime) -> None:
    """Verify a Standard Webhooks request (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

    The signature header may hold several space-separated `v1,<base64>` entries (a secret being
    rotated); one match is enough. Entries of other versions are skipped.

    Raises:
        SignatureRejected: a missing header, a timestamp outside 5 minutes, or no matching entry.
    """
    message_id = headers.get("webhook-id")
    signature = headers.get("webhook-signature")
    if not message_id:
        raise SignatureRejected("missing_header", "the webhook-id header is missing")
    if signature is None:
        raise SignatureRejected("missing_signature", "the webhook-signature header is missing")
    timestamp = headers.get("webhook-timestamp")
    check_timestamp(timestamp, now, "webhook-timestamp")
    assert timestamp is not None
    expected = standard_webhooks_signature(secret, message_id, timestamp.strip(), body).encode("ascii")
    for entry in signature.split():
        version, _, value = entry.partition(",")
        if version == STANDARD_WEBHOOKS_VERSION and hmac.compare_digest(
            f"{version},{value}".encode("ascii", "replace"), expected
        ):
            return
    raise SignatureRejected("bad_signature", "no v1 entry of the webhook-signature header matches the body")
