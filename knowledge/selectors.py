"""Reads other apps make of documents and chunks that are not about what a user may see.

What a user may see is knowledge.access; passages for a question come from
knowledge.retrieval. These take ids that an access-checked read already produced and
return no text, so they carry no scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from knowledge import row_security
from knowledge.models import Chunk, Document, DocumentRole


def chunk_content_hashes_unchecked(*, chunk_ids: Iterable[int]) -> dict[int, str]:
    """Content hashes for the audit trail only; never returned to a user. The ids come
    from a search already scoped to the user."""
    with row_security.maintenance():
        chunks = Chunk.objects.filter(pk__in=list(chunk_ids))
        return dict(chunks.values_list("id", "content_hash"))


def existing_chunk_ids(*, chunk_ids: Iterable[int]) -> set[int]:
    """The ids that still exist (re-ingestion replaces chunks under new ids)."""
    with row_security.maintenance():
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


def document_chunk_page_for_management(*, document_id: int, per_page: int, page_number) -> Page:
    """One page of the document's passages in order, for its management view: call only
    with a document from knowledge.access.access_document_for_management (the console's
    change page, whose queryset is document_list_for_management). The page is read here,
    under row_security.maintenance(), not later by the template."""
    passages = (
        Chunk.objects.filter(document_id=document_id)
        .order_by("position")
        .only("id", "position", "heading", "page", "token_count", "text")
    )
    with row_security.maintenance():
        page = Paginator(passages, per_page).get_page(page_number)
        page.object_list = list(page.object_list)
    return page


def document_titles_unchecked(*, document_ids: Iterable[int]) -> dict[int, str]:
    """Current titles by id, for the audit trail and the usage dashboard (auditors only):
    the ids come from stored citations and audit records, not from a user's request."""
    return dict(Document.objects.filter(pk__in=list(document_ids)).values_list("pk", "title"))


def document_names_and_roles_unchecked(
    *, document_ids: Iterable[int]
) -> dict[int, tuple[str, frozenset[int]]]:
    """Each document's name (its uploaded file's name, else its title) and role ids, for the
    evaluation harness to check, independently of retrieval, that what a case was shown lay
    within its asker's roles."""
    found: dict[int, tuple[str, set[int]]] = {
        pk: (filename or title, set())
        for pk, filename, title in Document.objects.filter(pk__in=list(document_ids)).values_list(
            "pk", "original_filename", "title"
        )
    }
    for document_id, role_id in DocumentRole.objects.filter(
        document_id__in=list(found)
    ).values_list("document_id", "role_id"):
        found[document_id][1].add(role_id)
    return {pk: (name, frozenset(roles)) for pk, (name, roles) in found.items()}


def ready_document_titles_unchecked() -> list[tuple[int, str]]:
    """(id, title) of every searchable document, for the auditors' filter of answer audits."""
    return list(
        Document.objects.filter(status=Document.Status.READY)
        .order_by("title", "pk")
        .values_list("pk", "title")
    )


def document_status_counts(*, failed_since, failed_until) -> dict[str, int]:
    """How many documents are queued, processing and failed now, and how many failed in
    [failed_since, failed_until): the ingestion figures of the usage dashboard."""
    failed = Q(status=Document.Status.FAILED)
    return Document.objects.aggregate(
        queued=Count("pk", filter=Q(status=Document.Status.QUEUED)),
        processing=Count("pk", filter=Q(status=Document.Status.PROCESSING)),
        failed=Count("pk", filter=failed),
        failed_in_period=Count(
            "pk",
            filter=failed
            & Q(status_changed_at__gte=failed_since, status_changed_at__lt=failed_until),
        ),
    )


@dataclass(frozen=True)
class TrainingDocument:
    id: int
    name: str  # the uploaded file's name, else the title
    title: str
    role_ids: frozenset[int]
    passages: tuple[tuple[str, str], ...]  # (heading, text) in document order


def documents_for_training_unchecked(*, role_ids: Iterable[int]) -> list[TrainingDocument]:
    """Ready documents that one of ``role_ids`` may see, with their passages, for building
    a training set (not on a user's behalf: the caller has checked that every active user
    holds one of these roles). Every document returned has a role among ``role_ids``; its
    chunks are read only where their own allowed roles overlap them too."""
    wanted = sorted(set(role_ids))
    if not wanted:
        return []
    documents = (
        Document.objects.filter(status=Document.Status.READY, roles__in=wanted)
        .distinct()
        .order_by("pk")
    )
    found = []
    with row_security.maintenance():
        for document in documents:
            document_roles = frozenset(
                DocumentRole.objects.filter(document=document).values_list("role_id", flat=True)
            )
            assert document_roles & set(wanted), document.pk
            passages = tuple(
                Chunk.objects.filter(document=document, allowed_roles__overlap=wanted)
                .order_by("position")
                .values_list("heading", "text")
            )
            found.append(
                TrainingDocument(
                    id=document.pk,
                    name=document.original_filename or document.title,
                    title=document.title,
                    role_ids=document_roles,
                    passages=passages,
                )
            )
    return found
