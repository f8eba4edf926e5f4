"""State changes of documents and chunks."""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
from collections.abc import Iterable, Sequence
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Role
from knowledge import embeddings
from knowledge.ingestion.chunking import ChunkDraft, chunk_sections
from knowledge.ingestion.parsers import UnsupportedType, kind_from_extension, parse_document
from knowledge.models import Document, DocumentRole

logger = logging.getLogger(__name__)


def _forget_role_counts() -> None:
    cache.delete("knowledge:role_chunk_counts")


def document_create(*, title: str, roles: Sequence[Role], uploaded_by=None, **fields) -> Document:
    if not roles:
        raise ValueError("A document needs at least one role.")
    with transaction.atomic():
        document = Document.objects.create(title=title, uploaded_by=uploaded_by, **fields)
        DocumentRole.objects.bulk_create(DocumentRole(document=document, role=r) for r in roles)
    return document


@transaction.atomic
def document_set_roles(*, document: Document, roles: Sequence[Role]) -> Document:
    """Re-scope a document: its chunks' allowed_roles are rewritten in one UPDATE.

    Effective when the surrounding transaction commits; nothing is re-embedded.
    """
    if not roles:
        raise ValueError("A document needs at least one role.")
    Document.objects.select_for_update().filter(pk=document.pk).first()
    role_ids = sorted({r.pk for r in roles})
    DocumentRole.objects.filter(document=document).exclude(role_id__in=role_ids).delete()
    existing = set(DocumentRole.objects.filter(document=document).values_list("role_id", flat=True))
    DocumentRole.objects.bulk_create(
        DocumentRole(document=document, role_id=r) for r in role_ids if r not in existing
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE knowledge_chunk SET allowed_roles = %s::int[] WHERE document_id = %s",
            [role_ids, document.pk],
        )
    document.save(update_fields=["updated_at"])
    transaction.on_commit(_forget_role_counts)
    return document


def documents_refresh_allowed_roles(*, document_ids: Iterable[int]) -> None:
    """Copy each document's roles into its chunks again, in one UPDATE (after a role delete)."""
    ids = list(document_ids)
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE knowledge_chunk c SET allowed_roles = COALESCE(
                (SELECT array_agg(dr.role_id ORDER BY dr.role_id) FROM knowledge_documentrole dr
                 WHERE dr.document_id = c.document_id), '{}')
            WHERE c.document_id = ANY(%s)
            """,
            [ids],
        )
    transaction.on_commit(_forget_role_counts)


def chunk_content_hash(draft: ChunkDraft) -> str:
    return hashlib.sha256(draft.embedding_input.encode()).hexdigest()


def document_replace_chunks(
    *, document_id: int, drafts: Sequence[ChunkDraft], vectors: np.ndarray, content_hash: str
) -> int:
    """Swap the document's chunks for new ones in one transaction; returns the chunk count.

    Readers see either all the old chunks or all the new ones. allowed_roles is copied from
    the document's roles under the document's row lock, so a concurrent re-scope cannot be
    lost. Returns 0 and changes nothing when the document no longer exists.
    """
    if len(drafts) != len(vectors):
        raise ValueError("one vector per chunk is required")
    with transaction.atomic():
        if not Document.objects.select_for_update().filter(pk=document_id).exists():
            return 0
        role_ids = sorted(
            DocumentRole.objects.filter(document_id=document_id).values_list("role_id", flat=True)
        )
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM knowledge_chunk WHERE document_id = %s", [document_id])
            roles_literal = "{" + ",".join(str(r) for r in role_ids) + "}"
            with cursor.copy(
                "COPY knowledge_chunk (document_id, position, text, heading, page, token_count,"
                " content_hash, embedding, allowed_roles) FROM STDIN"
            ) as copy:
                for draft, vector in zip(drafts, vectors, strict=True):
                    copy.write_row(
                        (
                            document_id,
                            draft.position,
                            draft.text,
                            draft.heading,
                            draft.page,
                            draft.token_count,
                            chunk_content_hash(draft),
                            embeddings.to_pgvector(vector),
                            roles_literal,
                        )
                    )
        document_mark_ready(
            document_id=document_id, chunk_count=len(drafts), content_hash=content_hash
        )
    return len(drafts)


def document_mark_ready(*, document_id: int, chunk_count: int, content_hash: str) -> None:
    """Call inside the transaction that swapped the chunks in."""
    now = timezone.now()
    Document.objects.filter(pk=document_id).update(
        status=Document.Status.READY,
        error="",
        chunk_count=chunk_count,
        indexed_hash=content_hash,
        progress_done=chunk_count,
        progress_total=chunk_count,
        status_changed_at=now,
        updated_at=now,
    )
    transaction.on_commit(_forget_role_counts)


def document_index_text(*, document: Document, text: str) -> int:
    """Synchronously chunk, embed and index Markdown-style text as the document's content."""
    parsed = parse_document(data=text.encode(), filename="content.md")
    drafts = chunk_sections(parsed.sections, count_tokens=embeddings.count_tokens)
    vectors = embeddings.embed_passages([d.embedding_input for d in drafts])
    return document_replace_chunks(
        document_id=document.pk,
        drafts=drafts,
        vectors=vectors,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )


class UploadRejected(Exception):
    """An upload refused before anything is stored; status is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


def _enqueue_ingest(document_id: int) -> None:
    from knowledge.tasks import ingest_document

    transaction.on_commit(lambda: ingest_document.delay(document_id))


def _check_upload(*, name: str, size: int, head: bytes) -> None:
    if size > settings.INGEST_MAX_UPLOAD_BYTES:
        raise UploadRejected(upload_limit_message(), status=413)
    try:
        kind_from_extension(name)
    except UnsupportedType as exc:
        raise UploadRejected(str(exc), status=415) from None
    if size == 0 or not head.strip():
        raise UploadRejected("The file is empty.", status=400)


def upload_limit_message() -> str:
    limit = settings.INGEST_MAX_UPLOAD_BYTES
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if limit >= size:
            return f"The file is larger than the {limit / size:g} {unit} limit."
    return f"The file is larger than the {limit} bytes limit."


def _hash_file(file) -> str:
    digest = hashlib.sha256()
    file.seek(0)
    for block in iter(lambda: file.read(1024 * 1024), b""):
        digest.update(block)
    file.seek(0)
    return digest.hexdigest()


def document_upload(
    *, file, roles: Sequence[Role], acting_user=None, title: str = ""
) -> tuple[Document, bool]:
    """Store an uploaded file as a queued document and enqueue its ingestion on commit.

    file is a Django File (name, size, chunks). Returns (document, created): the same bytes
    already uploaded with the same roles return the existing document, created=False.
    Raises UploadRejected (413, 415, 400) before anything is stored.
    """
    name = os.path.basename(file.name or "")
    file.seek(0)
    head = file.read(1024)
    _check_upload(name=name, size=file.size, head=head)
    if not roles:
        raise UploadRejected("At least one role is required.", status=400)
    content_hash = _hash_file(file)
    role_ids = sorted(r.pk for r in roles)
    for existing in Document.objects.filter(content_hash=content_hash).exclude(
        status=Document.Status.FAILED
    ):
        if sorted(existing.roles.values_list("pk", flat=True)) == role_ids:
            return existing, False
    with transaction.atomic():
        document = document_create(
            title=(title or _title_from_filename(name))[:255],
            roles=roles,
            uploaded_by=acting_user,
            original_filename=name[:255],
            content_type=(mimetypes.guess_type(name)[0] or "application/octet-stream")[:100],
            size_bytes=file.size,
            content_hash=content_hash,
        )
        document.file.save(name, file, save=False)
        Document.objects.filter(pk=document.pk).update(file=document.file.name)
        _enqueue_ingest(document.pk)
    return document, True


def document_replace_file(*, document: Document, file) -> Document:
    """Swap in a new file; the old chunks stay searchable until the new ones commit."""
    name = os.path.basename(file.name or "")
    file.seek(0)
    _check_upload(name=name, size=file.size, head=file.read(1024))
    content_hash = _hash_file(file)
    old_name = document.file.name
    with transaction.atomic():
        document.file.save(name, file, save=False)
        Document.objects.filter(pk=document.pk).update(
            file=document.file.name,
            original_filename=name[:255],
            content_type=(mimetypes.guess_type(name)[0] or "application/octet-stream")[:100],
            size_bytes=file.size,
            content_hash=content_hash,
            status=Document.Status.QUEUED,
            error="",
            progress_done=0,
            progress_total=0,
            status_changed_at=timezone.now(),
        )
        _enqueue_ingest(document.pk)
        if old_name and old_name != document.file.name:
            storage = document.file.storage
            transaction.on_commit(lambda: storage.delete(old_name))
    document.refresh_from_db()
    return document


def document_delete(*, document: Document) -> None:
    """Delete the document, its chunks (cascade) and, once committed, its stored file."""
    name, storage = document.file.name, document.file.storage
    with transaction.atomic():
        document.delete()
        transaction.on_commit(_forget_role_counts)
        if name:
            transaction.on_commit(lambda: storage.delete(name))


def documents_requeue_stuck(*, older_than_seconds: int | None = None) -> int:
    """Re-enqueue documents left queued or processing (a lost task, a killed worker)."""
    age = settings.INGEST_STUCK_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=age)
    stuck = list(
        Document.objects.filter(
            status__in=[Document.Status.QUEUED, Document.Status.PROCESSING],
            status_changed_at__lt=cutoff,
        ).values_list("pk", flat=True)
    )
    with transaction.atomic():
        Document.objects.filter(pk__in=stuck).update(status_changed_at=timezone.now())
        for document_id in stuck:
            _enqueue_ingest(document_id)
    if stuck:
        logger.warning("re-enqueued %d stuck documents: %s", len(stuck), stuck)
    return len(stuck)


def _title_from_filename(name: str) -> str:
    stem = os.path.splitext(name)[0].replace("_", " ").replace("-", " ").strip()
    return stem[:1].upper() + stem[1:] if stem else "Untitled document"


def document_rename(*, document: Document, title: str) -> Document:
    document.title = title
    document.save(update_fields=["title", "updated_at"])
    return document
