"""State changes of documents: upload, re-scope, rename, replace, delete.

Chunk rows and ingestion status are written through knowledge.index; ingestion itself runs
in the worker (knowledge.tasks), enqueued only once the transaction that stored the file
commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import os
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from accounts import policy
from accounts.access_log import Action, log_access
from accounts.models import Role
from accounts.policy import Actor
from accounts.selectors import Scope, user_scope
from knowledge import embeddings, index
from knowledge.ingestion.chunking import chunk_sections
from knowledge.ingestion.parsers import UnsupportedType, kind_from_extension
from knowledge.models import Document, DocumentRole
from knowledge.retrieval import chunk_search_with_plan
from knowledge.retrieval.hits import SearchHit
from knowledge.retrieval.planner import SearchPlan
from knowledge.tasks import ingest_document

logger = logging.getLogger(__name__)


def document_create(*, title: str, roles: Sequence[Role], **fields) -> Document:
    """A document row with its roles and no file: the building block of uploads, and of
    text indexed in-process (document_index_text). Not an entry point: it checks no
    management rights and logs nothing, so only services, tests and fixtures call it."""
    if not roles:
        raise ValueError("A document needs at least one role.")
    with transaction.atomic():
        document = Document.objects.create(title=title, **fields)
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
    index.document_chunks_set_roles(document_id=document.pk, role_ids=role_ids)
    document.save(update_fields=["updated_at"])
    return document


def document_index_text(*, document: Document, text: str) -> int:
    """Synchronously chunk, embed and index Markdown-style text as the document's content."""
    from knowledge.ingestion.parsers import parse_document

    parsed = parse_document(data=text.encode(), filename="content.md")
    drafts = chunk_sections(parsed.sections, count_tokens=embeddings.count_tokens)
    vectors = embeddings.embed_passages([d.embedding_input for d in drafts])
    return index.document_replace_chunks(
        document_id=document.pk,
        drafts=drafts,
        vectors=vectors,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )


class UploadRejected(Exception):
    """An upload refused with nothing of it stored; status is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


STORAGE_FAILED = (
    "The file could not be stored: the server's storage is full or unavailable. "
    "Nothing was saved; please try again later."
)


def _enqueue_ingest(document_id: int) -> None:
    transaction.on_commit(lambda: _send_ingest(document_id))


def _send_ingest(document_id: int) -> None:
    """Hand a committed, queued document to the broker. With the broker down the request
    still succeeds and nothing is lost: the document stays queued with its status clock set
    back, so the first sweep once the broker is back (knowledge.requeue_stuck_documents,
    every INGEST_SWEEP_INTERVAL_SECONDS) enqueues it; no one has to upload it again."""
    try:
        ingest_document.delay(document_id)
    except BrokerUnavailable:
        logger.error(
            "document %s stays queued: the task broker cannot be reached (the sweep "
            "enqueues it once the broker is back)",
            document_id,
            exc_info=True,
        )
        due = timezone.now() - timedelta(seconds=settings.INGEST_STUCK_AFTER_SECONDS + 1)
        Document.objects.filter(pk=document_id, status=Document.Status.QUEUED).update(
            status_changed_at=due
        )


def _save_file(*, document: Document, file, name: str) -> None:
    """Store ``file`` as document.file, or raise UploadRejected (503) with nothing of it left
    in storage (a full disk, a read-only volume); the caller's transaction then rolls back
    the row as well."""
    field, storage = document.file.field, document.file.storage
    root, ext = os.path.splitext(name)
    # A random part makes the name this upload's alone, so what a failed write left behind
    # can be deleted without touching another upload's file of the same name.
    target = field.generate_filename(document, storage.get_alternative_name(root, ext))
    try:
        document.file.name = storage.save(target, file, max_length=field.max_length)
    except OSError:
        logger.exception("an upload was refused: the file storage failed")
        with contextlib.suppress(OSError):
            storage.delete(target)
        raise UploadRejected(STORAGE_FAILED, status=503) from None


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
    *, actor: Actor, file, roles: Sequence[Role], title: str = ""
) -> tuple[Document, bool]:
    """Store an uploaded file as a queued document and enqueue its ingestion on commit.

    file is a Django File (name, size, chunks). The actor must manage every role
    (ManagementDenied). Returns (document, created): the same bytes already uploaded with
    the same roles return the existing document, created=False; the actor manages those
    roles, so it is a document they may see. Raises UploadRejected (413, 415, 400) before
    anything is stored, or 503 with nothing stored when the file storage fails.
    """
    if not roles:
        raise UploadRejected("At least one role is required.", status=400)
    role_ids = sorted(r.pk for r in roles)
    policy.check_upload_into(actor, role_ids)
    name, content_hash = _checked_file(file)
    for existing in Document.objects.filter(content_hash=content_hash).exclude(
        status=Document.Status.FAILED
    ):
        existing_roles = sorted(existing.roles.values_list("pk", flat=True))
        if existing_roles == role_ids and policy.can_view_document(
            actor, role_ids=existing_roles, uploaded_by_id=existing.uploaded_by_id
        ):
            return existing, False
    with transaction.atomic():
        document = document_create(
            title=(title or _title_from_filename(name))[:255],
            roles=roles,
            uploaded_by_id=actor.user_id,
            original_filename=name[:255],
            content_type=_content_type(name),
            size_bytes=file.size,
            content_hash=content_hash,
        )
        _save_file(document=document, file=file, name=name)
        Document.objects.filter(pk=document.pk).update(file=document.file.name)
        log_access(
            actor=actor,
            action=Action.DOCUMENT_UPLOADED,
            target_type="document",
            target_id=document.pk,
            target_label=document.title,
            after={"roles": sorted(r.name for r in roles), "file": name},
        )
        _enqueue_ingest(document.pk)
    return document, True


def _checked_file(file) -> tuple[str, str]:
    """(name, sha256) of an acceptable file; raises UploadRejected (413, 415, 400)."""
    name = os.path.basename(file.name or "")
    file.seek(0)
    _check_upload(name=name, size=file.size, head=file.read(1024))
    return name, _hash_file(file)


def _store_replacement_file(*, document: Document, file, name: str, content_hash: str) -> None:
    """Swap in a new file, queued for ingestion; the old chunks stay searchable until the
    new ones commit. Call inside a transaction."""
    old_name = document.file.name
    _save_file(document=document, file=file, name=name)
    Document.objects.filter(pk=document.pk).update(
        file=document.file.name,
        original_filename=name[:255],
        content_type=_content_type(name),
        size_bytes=file.size,
        content_hash=content_hash,
    )
    index.document_mark_queued(document_id=document.pk)
    _enqueue_ingest(document.pk)
    if old_name and old_name != document.file.name:
        storage = document.file.storage
        transaction.on_commit(lambda: storage.delete(old_name))


def _locked_state(document: Document) -> tuple[list[int], dict]:
    """Lock the document's row; its role ids and the state the access log records."""
    locked = Document.objects.select_for_update().get(pk=document.pk)
    role_ids = sorted(
        DocumentRole.objects.filter(document=locked).values_list("role_id", flat=True)
    )
    names = sorted(Role.objects.filter(pk__in=role_ids).values_list("name", flat=True))
    return role_ids, {
        "title": locked.title,
        "roles": names,
        "file": locked.original_filename,
        "content_hash": locked.content_hash,
    }


def _update_action(before: dict, after: dict) -> str:
    changed = {k for k in after if before[k] != after[k]}
    if changed == {"roles"}:
        return Action.DOCUMENT_RESCOPED
    if changed and changed <= {"file", "content_hash"}:
        return Action.DOCUMENT_FILE_REPLACED
    return Action.DOCUMENT_UPDATED


def document_update(
    *,
    actor: Actor,
    document: Document,
    roles: Sequence[Role] | None = None,
    title: str | None = None,
    file=None,
) -> Document:
    """Re-scope, rename and/or replace the file of a document, all or nothing.

    The actor must manage every current role of the document, and every new one
    (ManagementDenied). A file is checked before anything changes (UploadRejected: 413,
    415, 400), and every change commits in one transaction with its access-log entry, so a
    refused request leaves the roles and title as they were.
    """
    checked = _checked_file(file) if file is not None else None
    if roles is not None and not roles:
        raise ValueError("A document needs at least one role.")
    with transaction.atomic():
        role_ids, before = _locked_state(document)
        policy.check_change_document(actor, role_ids=role_ids)
        if roles is not None:
            policy.check_rescope(actor, before=role_ids, after=[r.pk for r in roles])
            document_set_roles(document=document, roles=roles)
        if title is not None:
            document_rename(document=document, title=title)
        if checked is not None:
            name, content_hash = checked
            _store_replacement_file(
                document=document, file=file, name=name, content_hash=content_hash
            )
        _, after = _locked_state(document)
        if after != before:
            changed = [k for k in after if before[k] != after[k]]
            log_access(
                actor=actor,
                action=_update_action(before, after),
                target_type="document",
                target_id=document.pk,
                target_label=after["title"],
                before={k: before[k] for k in changed},
                after={k: after[k] for k in changed},
            )
    document.refresh_from_db()
    return document


def document_reingest(*, actor: Actor, document: Document) -> None:
    """Parse, chunk and embed the stored file again (after a failure or a parser change).
    The old chunks stay searchable until the new ones commit."""
    with transaction.atomic():
        role_ids, state = _locked_state(document)
        policy.check_change_document(actor, role_ids=role_ids)
        index.document_mark_queued(document_id=document.pk)
        log_access(
            actor=actor,
            action=Action.DOCUMENT_REINGESTED,
            target_type="document",
            target_id=document.pk,
            target_label=state["title"],
            before={"status": document.status},
            after={"status": Document.Status.QUEUED},
        )
        _enqueue_ingest(document.pk)


def document_delete(*, actor: Actor, document: Document) -> None:
    """Delete the document, its chunks (cascade) and, once committed, its stored file."""
    document_id, name, storage = document.pk, document.file.name, document.file.storage
    with transaction.atomic():
        role_ids, before = _locked_state(document)
        policy.check_change_document(actor, role_ids=role_ids)
        log_access(
            actor=actor,
            action=Action.DOCUMENT_DELETED,
            target_type="document",
            target_id=document_id,
            target_label=before["title"],
            before=before,
        )
        index.document_delete(document=document)
        if name:
            transaction.on_commit(lambda: storage.delete(name))


def _title_from_filename(name: str) -> str:
    stem = os.path.splitext(name)[0].replace("_", " ").replace("-", " ").strip()
    return stem[:1].upper() + stem[1:] if stem else "Untitled document"


def _content_type(name: str) -> str:
    return (mimetypes.guess_type(name)[0] or "application/octet-stream")[:100]


def document_rename(*, document: Document, title: str) -> Document:
    document.title = title
    document.save(update_fields=["title", "updated_at"])
    return document


def search_as_user(
    *, actor: Actor, user, query: str, k: int = 10
) -> tuple[Scope, list[SearchHit], SearchPlan]:
    """Run ``user``'s search exactly as they would (their scope, the same choke point) for
    an auditor answering "why can't Ana find the budget?". Needs the audit permission
    (ManagementDenied), and every use is logged."""
    policy.check_audit(actor)
    scope = user_scope(user=user)
    hits, plan = chunk_search_with_plan(scope=scope, query=query, k=k)
    log_access(
        actor=actor,
        action=Action.SEARCH_AS_USER,
        target_type="user",
        target_id=user.pk,
        target_label=user.username,
        after={"query": query[:500], "k": k, "plan": plan.name, "results": len(hits)},
    )
    return scope, hits, plan
