"""The generic signed webhook for Slack-style platforms that are not Slack: replies go to
the request's response_url as JSON {"response_type": "ephemeral", "text": ...}, or back in
the HTTP answer. Mattermost's slash commands (integrations/mattermost_views.py) reuse its
checks and its replies.

This module must not import integrations.services (which imports it for ``respond``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction

from integrations.models import Question, Workspace

TIMEOUT_SECONDS = 10
# The column widths of Question.external_user_id, .event_id and .response_url.
MAX_USER_ID_CHARS = 64
MAX_EVENT_ID_CHARS = 64
MAX_RESPONSE_URL_CHARS = 500


class InvalidRequest(Exception):
    """A verified request that cannot be a question (400); the message says why."""


@dataclass(frozen=True)
class WebhookQuestion:
    user: str
    text: str
    response_url: str  # "" when the answer goes back in the HTTP response
    event_id: str  # "" when the sender gave no X-Webhook-Id


def webhook_workspace(
    *, integration_id: int, platform: str = Workspace.Platform.WEBHOOK
) -> Workspace | None:
    """The enabled integration of this platform with this id that has a secret, else None
    (a workspace without a secret would accept anything signed with, or equal to, "")."""
    return (
        Workspace.objects.filter(pk=integration_id, platform=platform, enabled=True)
        .exclude(signing_secret="")
        .first()
    )


def webhook_question_parse(*, body: bytes, event_id: str | None) -> WebhookQuestion:
    """The question in a verified body ``{"user", "text", "response_url"?}`` and its
    X-Webhook-Id, else InvalidRequest. Every string accepted here can be stored as is."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidRequest("The body is not JSON.") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("The body is not a JSON object.")
    user, text = payload.get("user"), payload.get("text")
    if not isinstance(user, str) or not user.strip():
        raise InvalidRequest('"user" must be a non-empty string (the platform\'s user id).')
    if len(user) > MAX_USER_ID_CHARS:
        raise InvalidRequest(f'"user" is longer than {MAX_USER_ID_CHARS} characters.')
    if not isinstance(text, str):
        raise InvalidRequest('"text" must be a string (the question).')
    text = text.strip()
    if not text:
        raise InvalidRequest('"text" is empty: send a question.')
    if len(text) > settings.CHAT_MAX_QUESTION_CHARS:
        raise InvalidRequest(
            f'"text" is longer than {settings.CHAT_MAX_QUESTION_CHARS} characters.'
        )
    response_url = payload.get("response_url")
    if response_url is None:
        response_url = ""
    if not isinstance(response_url, str):
        raise InvalidRequest('"response_url" must be a string (an http or https URL).')
    if response_url:
        response_url_check(response_url)
    event_id = event_id or ""
    if len(event_id) > MAX_EVENT_ID_CHARS or not (event_id.isascii() and event_id.isprintable()):
        raise InvalidRequest(
            f"X-Webhook-Id must be at most {MAX_EVENT_ID_CHARS} printable ASCII characters."
        )
    for name, value in (("user", user), ("text", text), ("response_url", response_url)):
        if not storable(value):
            raise InvalidRequest(f'"{name}" contains a NUL character or an unpaired surrogate.')
    return WebhookQuestion(user=user, text=text, response_url=response_url, event_id=event_id)


def webhook_question_create(
    *, workspace: Workspace, question: WebhookQuestion, request_digest: str
) -> Question | None:
    """Store a question to be answered within the request (no task, no response_url):
    None when this X-Webhook-Id, or this very signed request, was received before."""
    try:
        with transaction.atomic():
            return Question.objects.create(
                workspace=workspace,
                kind=Question.Kind.WEBHOOK,
                external_user_id=question.user,
                text=question.text,
                event_id=question.event_id,
                request_digest=request_digest,
            )
    except IntegrityError:
        return None


def response_url_check(url: str) -> None:
    """InvalidRequest unless answers may be posted to ``url``: an http(s) URL that fits
    Question.response_url, on a host in WEBHOOK_RESPONSE_URL_HOSTS."""
    if not _is_http_url(url):
        raise InvalidRequest('"response_url" must be an http or https URL.')
    if len(url) > MAX_RESPONSE_URL_CHARS:
        raise InvalidRequest(f'"response_url" is longer than {MAX_RESPONSE_URL_CHARS} characters.')
    if not response_url_allowed(url):
        raise InvalidRequest(
            '"response_url" is not on a host this server posts answers to '
            "(WEBHOOK_RESPONSE_URL_HOSTS)."
        )


def response_url_allowed(url: str) -> bool:
    """Answers are posted only to the hosts the operator named: a signed sender must not be
    able to point this server at its own network (the model server, the database)."""
    return httpx.URL(url).host in set(settings.WEBHOOK_RESPONSE_URL_HOSTS)


def request_digest(*, timestamp: str, signature: str) -> str:
    return hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()


def respond(question, *, text: str) -> None:
    """Post the reply to the question's response_url (nothing when it had none: the answer
    was returned in the HTTP response). Ephemeral: Mattermost then shows it to the asker
    only (the answer is drawn from their own roles); other platforms ignore the field."""
    url = question.response_url
    if not url or not _is_http_url(url) or not response_url_allowed(url):
        return
    reply = {"response_type": "ephemeral", "text": text}
    response = httpx.post(url, json=reply, timeout=TIMEOUT_SECONDS)
    response.raise_for_status()


def _is_http_url(url: str) -> bool:
    """An address the reply can be posted to: http(s), a host, a valid port, no spaces."""
    if not url.isprintable() or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
        host = httpx.URL(url).host
    except (ValueError, httpx.InvalidURL):
        return False
    return parts.scheme in {"http", "https"} and bool(host)


def storable(value: str) -> bool:
    """PostgreSQL refuses NUL in text, and UTF-8 cannot encode a lone surrogate (which
    JSON's \\ud800 escapes can produce)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
