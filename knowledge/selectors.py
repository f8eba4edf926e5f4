"""Reads other apps make of documents and chunks that are not about what a user may see.

What a user may see is knowledge.access; passages for a question come from
knowledge.retrieval. These take ids that an access-checked read already produced and
return no text, so they carry no scope.
"""

from __future__ import annotations

from collections.abc import Iterable

from knowledge.models import Chunk, Document


def chunk_content_hashes_unchecked(*, chunk_ids: Iterable[int]) -> dict[int, str]:
    """Content hashes for the audit trail only; never returned to a user. The ids come
    from a search already scoped to the user."""
    return dict(Chunk.objects.filter(pk__in=list(chunk_ids)).values_list("id", "content_hash"))


def existing_chunk_ids(*, chunk_ids: Iterable[int]) -> set[int]:
    """The ids that still exist (re-ingestion replaces chunks under new ids)."""
    return set(Chunk.objects.filter(pk__in=list(chunk_ids)).values_list("id", flat=True))


def existing_document_ids(*, document_ids: Iterable[int]) -> set[int]:
    return set(Document.objects.filter(pk__in=list(document_ids)).values_list("id", flat=True))
