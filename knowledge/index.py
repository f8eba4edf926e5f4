"""Every write of chunk rows and of a document's ingestion status.

Services (uploads, re-scoping, deletion) and the ingestion pipeline both write through
here, so the rules live in one place: chunks are swapped whole under the document's row
lock, their ``allowed_roles`` is always a copy of the document's roles, and the planner's
cached figures are forgotten once a write commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import timedelta

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from knowledge import embeddings, row_security
from knowledge.ingestion.chunking import ChunkDraft
from knowledge.models import Document, DocumentRole
from knowledge.retrieval.statistics import forget_role_counts


def _document_role_ids(document_id: int) -> list[int]:
    return sorted(
        DocumentRole.objects.filter(document_id=document_id).values_list("role_id", flat=True)
    )


def chunk_content_hash(draft: ChunkDraft) -> str:
    return hashlib.sha256(draft.embedding_input.encode()).hexdigest()


_CHUNK_COLUMNS = (
    "document_id, position, text, heading, page, token_count, content_hash, embedding,"
    " allowed_roles"
)
_CREATE_LOAD_TABLE = """
    CREATE TEMPORARY TABLE chunk_load (
        document_id bigint, position integer, text text, heading varchar(500), page integer,
        token_count integer, content_hash varchar(64), embedding vector, allowed_roles int[]
    ) ON COMMIT DROP
"""


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
    with row_security.maintenance():
        if not Document.objects.select_for_update().filter(pk=document_id).exists():
            return 0
        roles_literal = row_security.roles_literal(
            row_security.stored_roles(_document_role_ids(document_id))
        )
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM knowledge_chunk WHERE document_id = %s", [document_id])
            # PostgreSQL refuses COPY into a table with row-level security: the rows are
            # copied into a temporary table and inserted from there in one statement.
            cursor.execute(_CREATE_LOAD_TABLE)
            with cursor.copy(f"COPY chunk_load ({_CHUNK_COLUMNS}) FROM STDIN") as copy:
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
            cursor.execute(
                f"INSERT INTO knowledge_chunk ({_CHUNK_COLUMNS})"
                f" SELECT {_CHUNK_COLUMNS} FROM chunk_load"
            )
            cursor.execute("DROP TABLE chunk_load")
        document_mark_ready(
            document_id=document_id, chunk_count=len(drafts), content_hash=content_hash
        )
    return len(drafts)


_COPY_CHUNKS = """
    INSERT INTO knowledge_chunk (document_id, position, text, heading, page, token_count,
                                 content_hash, embedding, allowed_roles)
    SELECT %(target)s, position, text, heading, page, token_count, content_hash, embedding,
           %(roles)s::int[]
    FROM knowledge_chunk WHERE document_id = %(source)s
"""


def document_copy_chunks_of_identical_content(*, document_id: int, content_hash: str) -> int:
    """Dedupe: give the document copies of the chunks of a ready document with the same
    bytes, carrying this document's own roles; nothing is embedded again.

    Returns the id of the document copied from, or 0 when there is none (nothing changed).
    """
    with row_security.maintenance():
        current = Document.objects.select_for_update().filter(pk=document_id).first()
        if current is None or current.content_hash != content_hash:
            return 0
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
            return 0
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM knowledge_chunk WHERE document_id = %s", [document_id])
            cursor.execute(
                _COPY_CHUNKS,
                {
                    "target": document_id,
                    "roles": row_security.stored_roles(_document_role_ids(document_id)),
                    "source": source.pk,
                },
            )
            copied = cursor.rowcount
        document_mark_ready(document_id=document_id, chunk_count=copied, content_hash=content_hash)
    return source.pk


def document_chunks_set_roles(*, document_id: int, role_ids: Sequence[int]) -> None:
    """Re-scope the document's chunks in one UPDATE; effective when the caller commits."""
    with row_security.maintenance(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE knowledge_chunk SET allowed_roles = %s::int[] WHERE document_id = %s",
            [row_security.stored_roles(role_ids), document_id],
        )
    transaction.on_commit(forget_role_counts)


def documents_refresh_allowed_roles(*, document_ids: Iterable[int]) -> None:
    """Copy each document's roles into its chunks again, in one UPDATE (after a role delete)."""
    ids = list(document_ids)
    if not ids:
        return
    with row_security.maintenance(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE knowledge_chunk c SET allowed_roles = array_prepend(%s, COALESCE(
                (SELECT array_agg(dr.role_id ORDER BY dr.role_id) FROM knowledge_documentrole dr
                 WHERE dr.document_id = c.document_id), '{}'))
            WHERE c.document_id = ANY(%s)
            """,
            [row_security.MAINTENANCE_ROLE, ids],
        )
    transaction.on_commit(forget_role_counts)


def document_delete(*, document: Document) -> None:
    """Delete the document and, by cascade, its chunks (in the caller's transaction)."""
    with row_security.maintenance():
        document.delete()
    transaction.on_commit(forget_role_counts)


# --- ingestion status --------------------------------------------------------------------


def _set_status(document_id: int, status: str, **fields) -> None:
    now = timezone.now()
    Document.objects.filter(pk=document_id).update(
        status=status, status_changed_at=now, updated_at=now, **fields
    )


def document_mark_queued(*, document_id: int) -> None:
    _set_status(document_id, Document.Status.QUEUED, error="", progress_done=0, progress_total=0)


def document_mark_processing(*, document_id: int) -> None:
    _set_status(document_id, Document.Status.PROCESSING, error="", progress_done=0)


def document_set_progress(*, document_id: int, done: int | None = None, total: int | None = None):
    fields = {"progress_done": done, "progress_total": total}
    Document.objects.filter(pk=document_id).update(
        **{name: value for name, value in fields.items() if value is not None}
    )


def document_mark_ready(*, document_id: int, chunk_count: int, content_hash: str) -> None:
    """Call inside the transaction that swapped the chunks in."""
    _set_status(
        document_id,
        Document.Status.READY,
        error="",
        chunk_count=chunk_count,
        indexed_hash=content_hash,
        progress_done=chunk_count,
        progress_total=chunk_count,
    )
    transaction.on_commit(forget_role_counts)


def document_mark_failed(*, document_id: int, reason: str) -> None:
    """A failed document keeps any chunks of an earlier version: nothing stored is lost."""
    document = Document.objects.filter(pk=document_id).only("chunk_count").first()
    if document is None:
        return
    if document.chunk_count:
        reason += " The previously indexed version stays searchable."
    _set_status(document_id, Document.Status.FAILED, error=reason)


def documents_claim_stuck(*, older_than_seconds: int) -> list[int]:
    """Documents left queued or processing for longer than that (a lost task, a killed
    worker), with their status clock restarted so the next sweep leaves them alone."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    with transaction.atomic():
        stuck = list(
            Document.objects.select_for_update(skip_locked=True)
            .filter(
                status__in=[Document.Status.QUEUED, Document.Status.PROCESSING],
                status_changed_at__lt=cutoff,
            )
            .values_list("pk", flat=True)
        )
        Document.objects.filter(pk__in=stuck).update(status_changed_at=timezone.now())
    return stuck
