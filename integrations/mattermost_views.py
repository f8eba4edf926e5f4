"""Mattermost slash commands: `POST /integrations/mattermost/<id>/`, a form carrying the
token Mattermost generated for the command, which the operator pasted into a "Mattermost"
workspace in the console. No session and no CSRF token: that token, sent as
``Authorization: Token <token>`` (else as the form's ``token``) and compared in constant
time before any other field is read, is the authentication.

The answer is written by a task and posted to the response_url (on a host named in
WEBHOOK_RESPONSE_URL_HOSTS, checked as for the generic webhook) as an ephemeral reply, which
only the asker sees: it is drawn from their own roles (Question.Kind.WEBHOOK). Nothing from
the request (the token, the text) is logged, only why it was refused."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

from django.core.exceptions import TooManyFieldsSent
from django.http import JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations import services
from integrations.models import Question, Workspace
from integrations.webhook import (
    MAX_EVENT_ID_CHARS,
    MAX_USER_ID_CHARS,
    InvalidRequest,
    response_url_check,
    storable,
    webhook_workspace,
)
from integrations.webhook_views import ALREADY_RECEIVED, WORKING_ON_IT

logger = logging.getLogger(__name__)

MAX_CHANNEL_ID_CHARS = 64  # Question.channel_id
_COMMAND = re.compile(r"/[\w.-]{1,64}")


class TokenRejected(Exception):
    """The request does not carry the command's token (401); the message says why."""


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _ephemeral(text: str) -> JsonResponse:
    return JsonResponse({"response_type": "ephemeral", "text": text})


@csrf_exempt
@require_POST
def mattermost_command(request, integration_id: int):
    # Integration ids are not secret: an unknown one is refused before the token.
    workspace = webhook_workspace(
        integration_id=integration_id, platform=Workspace.Platform.MATTERMOST
    )
    if workspace is None:
        return _error(404, "No enabled Mattermost integration has this id.")
    try:
        form = QueryDict(request.body)
    except TooManyFieldsSent:
        logger.warning("mattermost %s: request refused: too many form fields", workspace.pk)
        return _error(400, "The form has too many fields.")
    try:
        _check_token(request, form, expected=workspace.signing_secret)
    except TokenRejected as exc:
        logger.warning("mattermost %s: request refused: %s", workspace.pk, exc)
        return _error(401, "The slash command's token is missing or wrong.")

    text = form.get("text", "").strip()
    if not text:
        return _ephemeral(_usage(form.get("command", "")))
    try:
        fields = _command_fields(form, text=text)
    except InvalidRequest as exc:
        logger.info("mattermost %s: bad request: %s", workspace.pk, exc)
        return _error(400, str(exc))
    received = services.question_receive(workspace=workspace, kind=Question.Kind.WEBHOOK, **fields)
    if received.question_id is None:
        return _ephemeral(ALREADY_RECEIVED)
    return _ephemeral(WORKING_ON_IT)


def _check_token(request, form: QueryDict, *, expected: str) -> None:
    """TokenRejected unless the request carries ``expected``: in ``Authorization: Token
    <token>`` when that header is sent (a malformed one is refused), else in the form."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, presented = header.strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "token" or not presented:
            raise TokenRejected("the Authorization header is not 'Token <token>'")
    else:
        presented = form.get("token", "")
        if not presented:
            raise TokenRejected("no token in the Authorization header or the form")
    # Bytes: compare_digest refuses str with non-ASCII characters, which a sender controls.
    if not hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode()):
        raise TokenRejected("the token does not match")


def _command_fields(form: QueryDict, *, text: str) -> dict:
    """The Question fields of a verified command, else InvalidRequest. Every value accepted
    here can be stored as is."""
    user_id, response_url = form.get("user_id", ""), form.get("response_url", "")
    channel_id, trigger_id = form.get("channel_id", ""), form.get("trigger_id", "")
    if not user_id or not response_url:
        raise InvalidRequest("A slash command needs user_id and response_url.")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidRequest(f"user_id is longer than {MAX_USER_ID_CHARS} characters.")
    if len(channel_id) > MAX_CHANNEL_ID_CHARS:
        raise InvalidRequest(f"channel_id is longer than {MAX_CHANNEL_ID_CHARS} characters.")
    response_url_check(response_url)
    for name, value in (("user_id", user_id), ("channel_id", channel_id), ("text", text)):
        if not storable(value):
            raise InvalidRequest(f"{name} contains a NUL character.")
    return {
        "external_user_id": user_id,
        "channel_id": channel_id,
        "text": text,
        "response_url": response_url,
        "event_id": _event_id(trigger_id),
    }


def _event_id(trigger_id: str) -> str:
    """The trigger id, which tells a redelivered command from a new one. Mattermost's are
    longer than Question.event_id holds (a base64 of random id, user id, time and signature),
    so a longer or unprintable one is kept as its SHA-256: whole, not a prefix."""
    if len(trigger_id) <= MAX_EVENT_ID_CHARS and trigger_id.isascii() and trigger_id.isprintable():
        return trigger_id
    return hashlib.sha256(trigger_id.encode("utf-8", "replace")).hexdigest()


def _usage(command: str) -> str:
    command = command if _COMMAND.fullmatch(command) else "/ask"
    return f"Ask a question after the command, for example: {command} What is the meal per diem?"
