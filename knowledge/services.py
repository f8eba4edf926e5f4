"""State changes of documents and chunks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Role
from knowledge import embeddings
from knowledge.ingestion.chunking import ChunkDraft, chunk_sections
from knowledge.models import Document, DocumentRole


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
        Document.objects.filter(pk=document_id).update(
            status=Document.Status.READY,
            error="",
            chunk_count=len(drafts),
            indexed_hash=content_hash,
            progress_done=len(drafts),
            progress_total=len(drafts),
            status_changed_at=timezone.now(),
            updated_at=timezone.now(),
        )
        transaction.on_commit(_forget_role_counts)
    return len(drafts)


def sections_from_text(text: str):
    """Markdown-style sections (ATX headings become heading paths) from plain text."""
    sections, path, body = [], [], []

    def flush():
        if "".join(body).strip():
            sections.append(_TextSection(text="\n".join(body).strip(), heading=" > ".join(path)))
        body.clear()

    for line in text.splitlines():
        match = re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if match:
            flush()
            level = len(match.group(1))
            del path[level - 1 :]
            path.append(match.group(2))
        else:
            body.append(line)
    flush()
    return sections


class _TextSection:
    __slots__ = ("heading", "page", "text")

    def __init__(self, *, text: str, heading: str = "", page: int | None = None):
        self.text, self.heading, self.page = text, heading, page


def document_index_text(*, document: Document, text: str) -> int:
    """Synchronously chunk, embed and index text as the document's content."""
    drafts = chunk_sections(sections_from_text(text), count_tokens=embeddings.count_tokens)
    vectors = embeddings.embed_passages([d.embedding_input for d in drafts])
    return document_replace_chunks(
        document_id=document.pk,
        drafts=drafts,
        vectors=vectors,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )
