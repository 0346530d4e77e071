"""Secrets: a plain environment variable locally, Secrets Manager (cached) when deployed.

`GITHUB_WEBHOOK_SECRET=...` wins when set; otherwise `GITHUB_WEBHOOK_SECRET_ARN` names a secret
that Powertools reads once and caches across invocations for `CACHE_SECONDS`.
"""

from __future__ import annotations

import os

from engagement.settings import SECRET_ARN_SUFFIX

CACHE_SECONDS = 300


def get_secret(name: str) -> str | None:
    """The value of secret `name`, or None when neither the variable nor its `_ARN` is set."""
    value = os.environ.get(name)
    if value:
        return value
    arn = os.environ.get(name + SECRET_ARN_SUFFIX)
    if not arn:
        return None
    from aws_lambda_powertools.utilities import parameters  # deferred: only deployed functions pay for it

    secret = parameters.get_secret(arn, max_age=CACHE_SECONDS)
    return secret if isinstance(secret, str) and secret else None
