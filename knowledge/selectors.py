"""Reads other apps make of documents and chunks that are not about what a user may see.

What a user may see is knowledge.access; passages for a question come from
knowledge.retrieval. These take ids that an access-checked read already produced and
return no text, so they carry no scope.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Exists, OuterRef, QuerySet

from knowledge.models import Chunk, Document, DocumentRole


def chunk_content_hashes_unchecked(*, chunk_ids: Iterable[int]) -> dict[int, str]:
    """Content hashes for the audit trail only; never returned to a user. The ids come
    from a search already scoped to the user."""
    return dict(Chunk.objects.filter(pk__in=list(chunk_ids)).values_list("id", "content_hash"))


def existing_chunk_ids(*, chunk_ids: Iterable[int]) -> set[int]:
    """The ids that still exist (re-ingestion replaces chunks under new ids)."""
    return set(Chunk.objects.filter(pk__in=list(chunk_ids)).values_list("id", flat=True))


def existing_document_ids(*, document_ids: Iterable[int]) -> set[int]:
    return set(Document.objects.filter(pk__in=list(document_ids)).values_list("id", flat=True))


def documents_only_in_role(*, role_id: int) -> list[tuple[int, str]]:
    """(id, title) of the documents whose only role is this one (deleting it orphans them)."""
    other = DocumentRole.objects.filter(document_id=OuterRef("pk")).exclude(role_id=role_id)
    return list(
        Document.objects.filter(roles__id=role_id)
        .exclude(Exists(other))
        .order_by("pk")
        .values_list("pk", "title")
    )


def documents_unreachable() -> QuerySet[Document]:
    """Documents that no active user can retrieve: none of their roles has an active member."""
    reachable = DocumentRole.objects.filter(document_id=OuterRef("pk"), role__users__is_active=True)
    return Document.objects.exclude(Exists(reachable))


def document_chunks_for_management(*, document_id: int) -> QuerySet[Chunk]:
    """The document's passages in order, for its management view: call only with a
    document from knowledge.access.access_document_for_management (the console's change
    page, whose queryset is document_list_for_management)."""
    return (
        Chunk.objects.filter(document_id=document_id)
        .order_by("position")
        .only("id", "position", "heading", "page", "token_count", "text")
    )
