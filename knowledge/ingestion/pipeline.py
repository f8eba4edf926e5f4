"""The worker side of ingestion: file -> parsed sections -> chunks -> embeddings -> index."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.db import transaction

from config.metrics import ingest_failure_record
from knowledge import embeddings, index
from knowledge.ingestion.chunking import chunk_sections
from knowledge.ingestion.parsers import ParseError, UnsupportedType
from knowledge.ingestion.sandbox import ParseBoundExceeded, parse_document_in_child
from knowledge.models import Document

logger = logging.getLogger(__name__)


def document_ingest(*, document_id: int) -> str:
    """Parse, chunk, embed and index the document's stored file; returns what happened.

    Idempotent: a document already indexed from its current file is left alone, and any
    number of runs (sequential or concurrent) leave exactly one set of chunks. A document
    whose last INGEST_MAX_ATTEMPTS runs all ended without a result (the worker died) is
    marked failed instead of being tried again.
    """
    document = Document.objects.filter(pk=document_id).first()
    if document is None:
        return "gone"
    if document.status == Document.Status.READY and document.indexed_hash == document.content_hash:
        return "already indexed"
    content_hash = document.content_hash
    if refused := _document_claim_for_ingest(document_id=document_id):
        return refused

    source_id = index.document_copy_chunks_of_identical_content(
        document_id=document_id, content_hash=content_hash
    )
    if source_id:
        logger.info("document %s reused the chunks of document %s", document_id, source_id)
        return "reused embeddings"

    try:
        with document.file.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        index.document_mark_failed(document_id=document_id, reason="The stored file is missing.")
        ingest_failure_record("missing_file")
        return "failed"
    if hashlib.sha256(data).hexdigest() != content_hash:
        return "superseded"  # the file was replaced meanwhile; that upload enqueued its own run
    try:
        parsed = parse_document_in_child(
            data=data,
            filename=document.original_filename or document.file.name,
            max_unpacked_bytes=settings.INGEST_MAX_UNPACKED_BYTES,
            max_xml_bytes=settings.INGEST_MAX_DOCX_XML_BYTES,
            max_memory_mb=settings.INGEST_PARSE_MAX_MEMORY_MB,
            timeout_seconds=settings.INGEST_PARSE_TIMEOUT_SECONDS,
        )
    except (ParseError, UnsupportedType) as exc:
        index.document_mark_failed(document_id=document_id, reason=str(exc))
        ingest_failure_record(_failure_reason(exc))
        return "failed"

    drafts = chunk_sections(parsed.sections, count_tokens=embeddings.count_tokens)
    index.document_set_progress(document_id=document_id, total=len(drafts))
    batch = settings.INGEST_EMBED_BATCH
    vectors = []
    for start in range(0, len(drafts), batch):
        part = drafts[start : start + batch]
        vectors.extend(embeddings.embed_passages([d.embedding_input for d in part]))
        index.document_set_progress(document_id=document_id, done=start + len(part))
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(pk=document_id).first()
        if current is None:
            return "gone"
        if current.content_hash != content_hash:
            return "superseded"
        index.document_replace_chunks(
            document_id=document_id, drafts=drafts, vectors=vectors, content_hash=content_hash
        )
    return "indexed"


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, UnsupportedType):
        return "unsupported_type"
    return "parse_limit" if isinstance(exc, ParseBoundExceeded) else "parse_error"


def _document_claim_for_ingest(*, document_id: int) -> str | None:
    """Count this run and mark the document processing, in one transaction. Returns None
    when claimed, else why not: "gone", or "gave up" once INGEST_MAX_ATTEMPTS runs have
    started since the document was last queued.

    Queueing (upload, a user's re-ingest, a replaced file) starts the count again; nothing
    else does, so the copies of a task that kills its worker (redeliveries, the stuck sweep)
    run out. A run that finds the document still processing follows one that died, and marks
    it failed with that reason; one that finds it failed or ready (a stray copy) leaves it.
    """
    max_attempts = settings.INGEST_MAX_ATTEMPTS
    with transaction.atomic():
        document = (
            Document.objects.select_for_update()
            .filter(pk=document_id)
            .only("status", "ingest_attempts")
            .first()
        )
        if document is None:
            return "gone"
        queued = document.status == Document.Status.QUEUED
        attempts = 1 if queued else document.ingest_attempts + 1
        if attempts > max_attempts:
            if document.status == Document.Status.PROCESSING:
                logger.error("document %s: gave up after %s attempts", document_id, max_attempts)
                index.document_mark_failed(
                    document_id=document_id,
                    reason=(
                        f"Gave up after {max_attempts} attempts: the parser crashed or ran "
                        "out of memory or time each time (the worker processing the file "
                        "died). Re-ingest the document to try again."
                    ),
                )
                ingest_failure_record("gave_up")
            return "gave up"
        Document.objects.filter(pk=document_id).update(ingest_attempts=attempts)
        index.document_mark_processing(document_id=document_id)
    return None
