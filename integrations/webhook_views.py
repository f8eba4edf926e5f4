"""The generic signed webhook endpoint (see integrations/webhook.py). No session and no
CSRF token: the v1 signature, made with the integration's own secret, is the
authentication, checked on the raw body before anything is parsed. Nothing from the
request (the body, the signature, the secret) is logged, only why it was refused."""

from __future__ import annotations

import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations import services
from integrations.models import Question
from integrations.verification import SignatureRejected, verify_webhook_request
from integrations.webhook import (
    InvalidRequest,
    request_digest,
    webhook_question_create,
    webhook_question_parse,
    webhook_workspace,
)

logger = logging.getLogger(__name__)

WORKING_ON_IT = "Working on it…"
ALREADY_RECEIVED = "Already received."


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


@csrf_exempt
@require_POST
def webhook(request, integration_id: int):
    # Integration ids are not secret: an unknown one is refused before the signature.
    workspace = webhook_workspace(integration_id=integration_id)
    if workspace is None:
        return _error(404, "No enabled webhook integration has this id.")
    try:
        verify_webhook_request(
            secret=workspace.signing_secret, body=request.body, headers=request.headers
        )
    except SignatureRejected as exc:
        logger.warning("webhook %s: request refused: %s", workspace.pk, exc)
        return _error(401, "The request signature is missing, stale or wrong.")
    try:
        question = webhook_question_parse(
            body=request.body, event_id=request.headers.get("X-Webhook-Id")
        )
    except InvalidRequest as exc:
        logger.info("webhook %s: bad request: %s", workspace.pk, exc)
        return _error(400, str(exc))

    digest = request_digest(
        timestamp=request.headers["X-Webhook-Timestamp"],
        signature=request.headers["X-Webhook-Signature"],
    )
    if question.response_url:
        received = services.question_receive(
            workspace=workspace,
            kind=Question.Kind.WEBHOOK,
            external_user_id=question.user,
            text=question.text,
            response_url=question.response_url,
            event_id=question.event_id,
            request_digest=digest,
        )
        if received.question_id is None:
            return JsonResponse({"text": ALREADY_RECEIVED})
        return JsonResponse({"text": WORKING_ON_IT}, status=202)

    stored = webhook_question_create(workspace=workspace, question=question, request_digest=digest)
    if stored is None:
        return JsonResponse({"text": ALREADY_RECEIVED})
    # No response_url: the sender waits for the answer in this response.
    delivery = services.question_answer(question_id=stored.pk)
    return JsonResponse({"text": delivery.text, "status": delivery.status})
