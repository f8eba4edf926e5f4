"""Who may see a document or a passage: the scoped reads every entry point goes through.

Every function takes the request's Scope (accounts.selectors.user_scope). A document or
passage outside it answers Http404, never 403: no existence oracle. A deliberate bypass
says so in its name (``_unchecked``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from accounts.policy import Actor
from accounts.selectors import Scope
from knowledge import row_security
from knowledge.models import Document, DocumentRole
from knowledge.retrieval.hits import HIT_COLUMNS, SearchHit, hit_from_row


def document_list_for_user(*, scope: Scope) -> QuerySet[Document]:
    visible = DocumentRole.objects.filter(
        document_id=OuterRef("pk"), role_id__in=list(scope.role_ids)
    )
    return Document.objects.filter(Exists(visible)).prefetch_related("roles")


def access_document(*, scope: Scope, document_id: int) -> Document:
    """The document if one of its roles is in the scope, else Http404 (never 403)."""
    try:
        return document_list_for_user(scope=scope).get(pk=document_id)
    except Document.DoesNotExist:
        raise Http404("No document with this id.") from None


def document_list_for_management(*, actor: Actor) -> QuerySet[Document]:
    """Documents whose management view (status, error, roles, file, chunks) the actor may
    see: every document for a superuser, else those in a role they manage and those they
    uploaded. The rule is accounts.policy.can_view_document, as SQL."""
    documents = Document.objects.prefetch_related("roles")
    if actor.is_superuser:
        return documents
    managed = DocumentRole.objects.filter(
        document_id=OuterRef("pk"), role_id__in=list(actor.managed_role_ids)
    )
    condition = Q(Exists(managed))
    if actor.user_id is not None:
        condition |= Q(uploaded_by_id=actor.user_id)
    return documents.filter(condition)


def access_document_for_management(*, actor: Actor, document_id: int) -> Document:
    """The document if the actor may see its management view, else Http404 (never 403)."""
    try:
        return document_list_for_management(actor=actor).get(pk=document_id)
    except Document.DoesNotExist:
        raise Http404("No document with this id.") from None


def access_document_or_its_status(*, scope: Scope, actor: Actor, document_id: int) -> Document:
    """The document if it is in the scope, or the actor uploaded it or manages one of its
    roles (they follow its ingestion status); else Http404."""
    try:
        return access_document(scope=scope, document_id=document_id)
    except Http404:
        return access_document_for_management(actor=actor, document_id=document_id)


def visible_document_ids(*, scope: Scope, document_ids: Iterable[int]) -> set[int]:
    """The subset of document_ids the scope may see now."""
    ids = set(document_ids)
    if not ids or not scope.role_ids:
        return set()
    visible = document_list_for_user(scope=scope).filter(pk__in=ids)
    return set(visible.values_list("pk", flat=True))


def access_chunk(*, scope: Scope, chunk_id: int) -> SearchHit:
    """One passage if it overlaps the scope's roles, else Http404 (never 403)."""
    if not scope.role_ids:
        raise Http404("No passage with this id.")
    with row_security.scoped(scope.role_ids), connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {HIT_COLUMNS} FROM knowledge_chunk c
            JOIN knowledge_document d ON d.id = c.document_id
            WHERE c.id = %s AND c.allowed_roles && %s::int[]
            """,
            [chunk_id, list(scope.role_ids)],
        )
        row = cursor.fetchone()
    if row is None:
        raise Http404("No passage with this id.")
    return hit_from_row(row, score=0.0)


def visible_chunk_ids(*, scope: Scope, chunk_ids: Iterable[int]) -> set[int]:
    """The subset of chunk_ids the scope may see now (conversation history re-checks these)."""
    ids = list(set(chunk_ids))
    if not scope.role_ids or not ids:
        return set()
    with row_security.scoped(scope.role_ids), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM knowledge_chunk WHERE id = ANY(%s) AND allowed_roles && %s::int[]",
            [ids, list(scope.role_ids)],
        )
        return {row[0] for row in cursor.fetchall()}
