"""The routes issue 3's webhook branch adds to the local API Gateway stand-in (see server.py)."""

from __future__ import annotations

from typing import Any


def community_routes() -> dict[str, tuple[str, Any]]:
    from engagement.handlers import bevy_webhook, discord_webhook, events_endpoint, slack_webhook

    return {
        "/webhooks/slack": ("SlackWebhookFunction", slack_webhook.lambda_handler),
        "/webhooks/discord": ("DiscordWebhookFunction", discord_webhook.lambda_handler),
        "/webhooks/bevy": ("BevyWebhookFunction", bevy_webhook.lambda_handler),
        "/events": ("EventsFunction", events_endpoint.lambda_handler),
    }
