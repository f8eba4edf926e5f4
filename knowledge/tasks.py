"""Celery tasks: they take ids, call one service and own their retries."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from config.metrics import ingest_failure_record
from knowledge import index
from knowledge.ingestion.pipeline import document_ingest

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(
    name="knowledge.ingest_document",
    queue="ingest",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=6,
    soft_time_limit=900,
    time_limit=960,
)
def ingest_document(document_id: int) -> str:
    try:
        return document_ingest(document_id=document_id)
    except TRANSIENT_ERRORS:
        raise
    except SoftTimeLimitExceeded:
        index.document_mark_failed(
            document_id=document_id,
            reason="Ingestion took longer than the time limit; split the file and upload again.",
        )
        ingest_failure_record("time_limit")
        raise
    except Exception as exc:
        # A bug or a pathological file: record it on the document instead of retrying forever.
        index.document_mark_failed(
            document_id=document_id, reason=f"Ingestion failed unexpectedly ({type(exc).__name__})."
        )
        ingest_failure_record("unexpected")
        raise


@shared_task(name="knowledge.requeue_stuck_documents", queue="ingest", ignore_result=True)
def requeue_stuck_documents(older_than_seconds: int | None = None) -> int:
    """The periodic sweep: re-enqueue documents whose task was lost (a killed worker)."""
    if older_than_seconds is None:
        older_than_seconds = settings.INGEST_STUCK_AFTER_SECONDS
    stuck = index.documents_claim_stuck(older_than_seconds=older_than_seconds)
    for document_id in stuck:
        ingest_document.delay(document_id)
    if stuck:
        logger.warning("re-enqueued %d stuck documents: %s", len(stuck), stuck)
    return len(stuck)
