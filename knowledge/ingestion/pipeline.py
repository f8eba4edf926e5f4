"""The worker side of ingestion: file -> parsed sections -> chunks -> embeddings -> index."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from knowledge import embeddings
from knowledge.ingestion.chunking import chunk_sections
from knowledge.ingestion.parsers import ParseError, UnsupportedType, parse_document
from knowledge.models import Document, DocumentRole
from knowledge.services import document_mark_ready, document_replace_chunks

logger = logging.getLogger(__name__)


def _set_status(document_id: int, status: str, **fields) -> None:
    Document.objects.filter(pk=document_id).update(
        status=status, status_changed_at=timezone.now(), updated_at=timezone.now(), **fields
    )


def document_mark_failed(*, document_id: int, reason: str) -> None:
    """A failed document keeps any chunks of an earlier version: nothing stored is lost."""
    document = Document.objects.filter(pk=document_id).only("chunk_count").first()
    if document is None:
        return
    if document.chunk_count:
        reason += " The previously indexed version stays searchable."
    _set_status(document_id, Document.Status.FAILED, error=reason)


def document_ingest(*, document_id: int) -> str:
    """Parse, chunk, embed and index the document's stored file; returns what happened.

    Idempotent: a document already indexed from its current file is left alone, and any
    number of runs (sequential or concurrent) leave exactly one set of chunks.
    """
    document = Document.objects.filter(pk=document_id).first()
    if document is None:
        return "gone"
    if document.status == Document.Status.READY and document.indexed_hash == document.content_hash:
        return "already indexed"
    content_hash = document.content_hash
    _set_status(document_id, Document.Status.PROCESSING, error="", progress_done=0)

    if _copy_chunks_of_identical_content(document_id=document_id, content_hash=content_hash):
        return "reused embeddings"

    try:
        with document.file.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        document_mark_failed(document_id=document_id, reason="The stored file is missing.")
        return "failed"
    if hashlib.sha256(data).hexdigest() != content_hash:
        return "superseded"  # the file was replaced meanwhile; that upload enqueued its own run
    try:
        parsed = parse_document(
            data=data,
            filename=document.original_filename or document.file.name,
            max_unpacked_bytes=settings.INGEST_MAX_UNPACKED_BYTES,
        )
    except (ParseError, UnsupportedType) as exc:
        document_mark_failed(document_id=document_id, reason=str(exc))
        return "failed"

    drafts = chunk_sections(parsed.sections, count_tokens=embeddings.count_tokens)
    Document.objects.filter(pk=document_id).update(progress_total=len(drafts))
    batch = settings.INGEST_EMBED_BATCH
    vectors = []
    for start in range(0, len(drafts), batch):
        part = drafts[start : start + batch]
        vectors.extend(embeddings.embed_passages([d.embedding_input for d in part]))
        Document.objects.filter(pk=document_id).update(progress_done=start + len(part))
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(pk=document_id).first()
        if current is None:
            return "gone"
        if current.content_hash != content_hash:
            return "superseded"
        document_replace_chunks(
            document_id=document_id, drafts=drafts, vectors=vectors, content_hash=content_hash
        )
    return "indexed"


_COPY_CHUNKS = """
    INSERT INTO knowledge_chunk (document_id, position, text, heading, page, token_count,
                                 content_hash, embedding, allowed_roles)
    SELECT %(target)s, position, text, heading, page, token_count, content_hash, embedding,
           %(roles)s::int[]
    FROM knowledge_chunk WHERE document_id = %(source)s
"""


def _copy_chunks_of_identical_content(*, document_id: int, content_hash: str) -> bool:
    """Dedupe: reuse the chunks and embeddings of another document with the same bytes.

    The copies carry this document's own roles; nothing is embedded again.
    """
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(pk=document_id).first()
        if current is None or current.content_hash != content_hash:
            return False
        source = (
            Document.objects.filter(
                content_hash=content_hash,
                indexed_hash=content_hash,
                status=Document.Status.READY,
                chunk_count__gt=0,
            )
            .exclude(pk=document_id)
            .order_by("pk")
            .first()
        )
        if source is None:
            return False
        role_ids = sorted(
            DocumentRole.objects.filter(document_id=document_id).values_list("role_id", flat=True)
        )
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM knowledge_chunk WHERE document_id = %s", [document_id])
            cursor.execute(
                _COPY_CHUNKS, {"target": document_id, "roles": role_ids, "source": source.pk}
            )
            copied = cursor.rowcount
        document_mark_ready(document_id=document_id, chunk_count=copied, content_hash=content_hash)
    logger.info("document %s reused the chunks of document %s", document_id, source.pk)
    return True
