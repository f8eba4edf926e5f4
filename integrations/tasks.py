"""Celery tasks (queue "answers"): they take ids, call one service and own their retries."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from integrations import services

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(
    name="integrations.answer_question",
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    max_retries=3,
    soft_time_limit=240,
    time_limit=300,
)
def answer_question(question_id: int) -> str:
    return services.question_answer(question_id=question_id).status


@shared_task(name="integrations.share_answer", acks_late=True, soft_time_limit=60, time_limit=90)
def share_answer(
    workspace_id: int, external_user_id: str, message_id: int, channel_id: str, response_url: str
) -> bool:
    return services.answer_share(
        workspace_id=workspace_id,
        external_user_id=external_user_id,
        message_id=message_id,
        channel_id=channel_id,
        response_url=response_url,
    )
