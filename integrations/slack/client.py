"""Slack's Web API and response URLs, through slack_sdk. The one module that talks to Slack
(tests point SLACK_API_URL and the response URLs at a local stand-in)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10


class ReplyFailed(Exception):
    """Slack refused or could not be reached; the reason, never the token."""


def web_client() -> WebClient:
    return WebClient(
        token=settings.SLACK_BOT_TOKEN or None,
        base_url=settings.SLACK_API_URL,
        timeout=TIMEOUT_SECONDS,
    )


def response_url_allowed(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"https", "http"} and parts.hostname in set(
        settings.SLACK_RESPONSE_URL_HOSTS
    )


def respond(response_url: str, *, text: str, blocks: list | None = None, **fields) -> None:
    """Post to a slash command's or an action's response_url (ephemeral unless fields say)."""
    if not response_url_allowed(response_url):
        raise ReplyFailed("the response_url is not a Slack address")
    fields.setdefault("response_type", "ephemeral")
    response = WebhookClient(response_url, timeout=TIMEOUT_SECONDS).send(
        text=text, blocks=blocks, **fields
    )
    if response.status_code >= 300:
        raise ReplyFailed(f"response_url answered {response.status_code}")


def post_message(*, channel: str, text: str, blocks: list | None = None, thread_ts: str = ""):
    return web_client().chat_postMessage(
        channel=channel, text=text, blocks=blocks, thread_ts=thread_ts or None
    )


def post_ephemeral(*, channel: str, user: str, text: str, blocks: list | None = None):
    return web_client().chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)


def user_email(*, user: str) -> str:
    """The Slack user's email when Slack says it is confirmed, else "" (also when Slack
    refuses, e.g. the app lacks users:read.email: the person is then asked to link)."""
    try:
        profile = web_client().users_info(user=user).get("user") or {}
    except SlackApiError as exc:
        logger.warning("slack: users.info refused (%s)", exc.response.get("error", "unknown"))
        return ""
    if profile.get("is_bot") or profile.get("deleted") or not profile.get("is_email_confirmed"):
        return ""
    return (profile.get("profile") or {}).get("email", "") or ""
