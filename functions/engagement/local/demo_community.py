"""The demo's Slack workspace and one generic event source (POST /events), signed as each signs.

Slack: members join the workspace (`team_join` carries their email, which links each Slack
account to the member the forum and GitHub already know), a question is asked and retried and
resent under new event ids (it counts once), a colleague answers in the thread, another reacts,
a deploy bot posts (never scored), and a message is written and deleted (its points withdrawn).
The blog's post/comment/referral script sends one batch to POST /events, one item of it invalid.
Every person, id and address is invented.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx

from engagement.domain.signature_schemes import slack_signature
from engagement.local import demo_data
from engagement.local.stack import LOCAL_SECRETS

TEAM, CHANNEL = "T0AUR0RA1", "C0HELPDESK"
SLACK_USERS = {demo_data.PRIYA: "U0PRIYA01", demo_data.MARCO: "U0MARCO01", demo_data.LENA: "U0LENA001"}
EVENTS_SOURCE = "local-script"


def _ts(now: datetime, days_ago: float, n: int) -> str:
    """A Slack ts: whole seconds, a dot, six digits; `n` keeps ts values in one second apart."""
    return f"{int((now - timedelta(days=days_ago)).timestamp())}.{n:06d}"


def _envelope(event: dict[str, Any], event_id: str, now: datetime) -> dict[str, Any]:
    return {
        "token": "demo-verification-token",
        "team_id": TEAM,
        "api_app_id": "A0ENGAGE1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(now.timestamp()),
        "authorizations": [{"team_id": TEAM, "user_id": "U0ENGAGE1", "is_bot": True, "is_enterprise_install": False}],
    }


def slack_deliveries(now: datetime) -> list[tuple[str, dict[str, Any], int | None]]:
    """(note, body, retry number) for each Slack delivery, in order."""
    out: list[tuple[str, dict[str, Any], int | None]] = []
    for n, (person, user) in enumerate(SLACK_USERS.items(), start=1):
        profile = {"real_name": person.name, "display_name": person.name.split()[0], "email": person.email}
        event = {
            "type": "team_join",
            "user": {
                "id": user,
                "team_id": TEAM,
                "name": user.lower(),
                "deleted": False,
                "is_bot": False,
                "is_app_user": False,
                "profile": profile,
            },
        }
        out.append((f"{person.name} joins the Slack workspace", _envelope(event, f"Ev0JOIN{n:04d}", now), None))

    question_ts = _ts(now, 4, 100)
    question = {
        "type": "message",
        "user": SLACK_USERS[demo_data.PRIYA],
        "ts": question_ts,
        "channel": CHANNEL,
        "channel_type": "channel",
        "event_ts": question_ts,
        "text": "Is there a way to page through export results without holding them all in memory?",
    }
    out.append(("Priya asks in #helpdesk", _envelope(question, "Ev0Q000001", now), None))
    out.append(("Slack retries the same delivery", _envelope(question, "Ev0Q000001", now), 1))
    out.append(("Slack resends the message under a new event id", _envelope(question, "Ev0Q000002", now), None))
    out.append(("... and once more", _envelope(question, "Ev0Q000003", now), None))

    reply_ts = _ts(now, 3.9, 200)
    reply = {
        "type": "message",
        "user": SLACK_USERS[demo_data.MARCO],
        "ts": reply_ts,
        "thread_ts": question_ts,
        "parent_user_id": SLACK_USERS[demo_data.PRIYA],
        "channel": CHANNEL,
        "channel_type": "channel",
        "event_ts": reply_ts,
        "text": "Yes: pass page_size and follow next_cursor; memory stays flat.",
    }
    out.append(("Marco answers in Priya's thread", _envelope(reply, "Ev0R000001", now), None))

    reaction = {
        "type": "reaction_added",
        "user": SLACK_USERS[demo_data.LENA],
        "reaction": "raised_hands",
        "item_user": SLACK_USERS[demo_data.MARCO],
        "item": {"type": "message", "channel": CHANNEL, "ts": reply_ts},
        "event_ts": _ts(now, 3.8, 300),
    }
    out.append(("Lena reacts to Marco's answer", _envelope(reaction, "Ev0X000001", now), None))

    bot_ts = _ts(now, 3, 400)
    bot = {
        "type": "message",
        "user": "U0DEPLOY1",
        "bot_id": "B0DEPLOY1",
        "ts": bot_ts,
        "channel": CHANNEL,
        "channel_type": "channel",
        "event_ts": bot_ts,
        "text": "Release 4.2.0 is live",
        "bot_profile": {"id": "B0DEPLOY1", "name": "deploy-bot", "app_id": "A0DEPLOY1", "team_id": TEAM},
    }
    out.append(("the deploy bot posts (it has a user field too)", _envelope(bot, "Ev0B000001", now), None))

    oops_ts = _ts(now, 2, 500)
    oops = {
        "type": "message",
        "user": SLACK_USERS[demo_data.LENA],
        "ts": oops_ts,
        "channel": CHANNEL,
        "channel_type": "channel",
        "event_ts": oops_ts,
        "text": "wrong channel, sorry",
    }
    out.append(("Lena posts in the wrong channel", _envelope(oops, "Ev0O000001", now), None))
    deleted_ts = _ts(now, 2, 600)
    deletion = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": CHANNEL,
        "channel_type": "channel",
        "deleted_ts": oops_ts,
        "ts": deleted_ts,
        "event_ts": deleted_ts,
        "previous_message": {
            "type": "message",
            "user": SLACK_USERS[demo_data.LENA],
            "ts": oops_ts,
            "text": "wrong channel, sorry",
        },
    }
    out.append(("... and deletes it", _envelope(deletion, "Ev0O000002", now), None))
    return out


def events_batch(now: datetime) -> dict[str, Any]:
    def at(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    return {
        "events": [
            {
                "id": "post-2291",
                "user_id": "lena",
                "email": demo_data.LENA.email,
                "name": demo_data.LENA.name,
                "action_type": "create_content",
                "timestamp": at(5),
                "metadata": {"url": "https://blog.aurora-labs.example/streaming-exports", "title": "Streaming exports"},
            },
            {
                "id": "comment-7731",
                "user_id": "aiko",
                "email": demo_data.AIKO.email,
                "action_type": "comment",
                "timestamp": at(2),
                "metadata": {"url": "https://blog.aurora-labs.example/streaming-exports#c7731"},
            },
            {
                "id": "referral-0417",
                "user_id": "marco",
                "email": demo_data.MARCO.email,
                "action_type": "refer",
                "timestamp": at(8),
                "metadata": {"referred_company": "Northwind Example Ltd"},
            },
            {
                "id": "challenge-0009",
                "user_id": "priya",
                "email": demo_data.PRIYA.email,
                "action_type": "win_hackathon",
                "timestamp": at(1),
            },
        ]
    }


def post_all(client: httpx.Client, now: datetime, outcomes: Counter[str], notes: list[tuple[str, str]]) -> None:
    """Post the Slack deliveries and the /events batch, counting outcomes as the demo does."""
    secret = LOCAL_SECRETS["SLACK_SIGNING_SECRET"]
    for note, payload, retry in slack_deliveries(now):
        body = json.dumps(payload).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": slack_signature(secret, timestamp, body),
        }
        if retry:
            headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
        response = client.post("/webhooks/slack", content=body, headers=headers)
        answer = response.json()
        status = answer.get("status", str(response.status_code))
        outcomes[f"{response.status_code} {status}"] += 1
        if status != "stored":
            notes.append((f"slack: {note}", answer.get("reason") or answer.get("message") or status))

    body = json.dumps(events_batch(now)).encode()
    message_id, timestamp = "msg_demo_0001", str(int(time.time()))
    key = base64.b64decode(json.loads(LOCAL_SECRETS["EVENTS_SOURCE_SECRETS"])[EVENTS_SOURCE].removeprefix("whsec_"))
    signature = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    response = client.post(
        "/events",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Event-Source": EVENTS_SOURCE,
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + signature.decode(),
        },
    )
    for result in response.json().get("results", []):
        outcomes[f"/events item {result['status']}"] += 1
        if result["status"] != "stored":
            notes.append((f"/events item {result.get('id')}", result.get("reason") or result["status"]))
