"""Reads of conversations for their owner. Everything here is scoped to the acting user;
citations are re-checked against the request's Scope on every read."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.http import Http404

from accounts.selectors import Scope
from chatbot.citations import Citation
from chatbot.models import Conversation, Feedback, Message, MessageCitation
from knowledge.access import visible_chunk_ids, visible_document_ids

REDACTED_ANSWER = (
    "This answer drew on documents you can no longer access, so it is hidden. "
    "Ask again to get an answer from the documents you can see now."
)


def conversation_list_for_user(*, user) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner_id=user.pk).order_by("-updated_at", "-id")


def access_conversation(*, user, conversation_id: int) -> Conversation:
    """The user's own conversation, else Http404 (never 403: no existence oracle)."""
    try:
        return conversation_list_for_user(user=user).get(pk=conversation_id)
    except Conversation.DoesNotExist:
        raise Http404("No conversation with this id.") from None


def access_message(*, user, message_id: int) -> Message:
    """An assistant message in one of the user's conversations, else Http404."""
    try:
        return Message.objects.select_related("conversation").get(
            pk=message_id, conversation__owner_id=user.pk, role=Message.Role.ASSISTANT
        )
    except Message.DoesNotExist:
        raise Http404("No answer with this id.") from None


@dataclass(frozen=True)
class MessageView:
    id: int
    role: str
    text: str
    created_at: object
    citations: list[Citation] = field(default_factory=list)
    model: str = ""
    fallback_used: bool = False
    not_found: bool = False
    redacted: bool = False
    scoped_roles: list[str] = field(default_factory=list)
    feedback: dict | None = None


def conversation_messages_for_user(
    *, scope: Scope, conversation: Conversation
) -> list[MessageView]:
    """The conversation's messages with every citation re-checked against ``scope`` *now*:
    a passage it no longer covers is reported only as unavailable (no title, no text), and
    an answer that drew on a document it no longer covers is hidden. An answer drew on every
    passage its prompt showed (AnswerAudit.shown_chunk_ids), cited or not.

    ``conversation`` must be the scope's user's own (access_conversation)."""
    messages = list(
        conversation.messages.select_related("audit").prefetch_related(
            Prefetch("citations", queryset=MessageCitation.objects.order_by("index")),
            Prefetch("feedback", queryset=Feedback.objects.filter(user_id=scope.user_id)),
        )
    )
    cited = [c for m in messages for c in m.citations.all()]
    shown = {m.id: _shown_passages(m) for m in messages}
    unmapped_shown = {chunk_id for documents, chunks in shown.values() for chunk_id in chunks}
    visible = visible_chunk_ids(
        scope=scope, chunk_ids=[c.cited_chunk_id for c in cited] + list(unmapped_shown)
    )
    visible_documents = visible_document_ids(
        scope=scope,
        document_ids={c.cited_document_id for c in cited}
        | {document_id for documents, _ in shown.values() for document_id in documents},
    )
    views = []
    for message in messages:
        stored = [_citation(c) for c in message.citations.all()]
        citations = [c if c.chunk_id in visible else c.withheld() for c in stored]
        shown_documents, unmapped = shown[message.id]
        redacted = (
            any(c.document_id not in visible_documents for c in stored)
            or any(document_id not in visible_documents for document_id in shown_documents)
            or any(chunk_id not in visible for chunk_id in unmapped)
        )
        own_feedback = next(iter(message.feedback.all()), None)
        views.append(
            MessageView(
                id=message.id,
                role=message.role,
                text=REDACTED_ANSWER if redacted else message.text,
                created_at=message.created_at,
                citations=citations,
                model=message.model,
                fallback_used=message.fallback_used,
                not_found=message.not_found,
                redacted=redacted,
                scoped_roles=list(message.scoped_roles),
                feedback=(
                    {"rating": own_feedback.rating, "comment": own_feedback.comment}
                    if own_feedback
                    else None
                ),
            )
        )
    return views


def _shown_passages(message: Message) -> tuple[set[int], set[int]]:
    """The documents of the passages the answer's prompt showed, from its audit record, and
    any shown chunk the record does not map to a document (then checked chunk by chunk)."""
    audit = getattr(message, "audit", None)  # none for questions and unaudited answers
    if audit is None:
        return set(), set()
    document_of = {r["chunk_id"]: r["document_id"] for r in audit.retrieved}
    shown = set(audit.shown_chunk_ids)
    return {document_of[c] for c in shown if c in document_of}, shown - document_of.keys()


def _citation(stored: MessageCitation) -> Citation:
    return Citation(
        index=stored.index,
        document_id=stored.cited_document_id,
        title=stored.title,
        chunk_id=stored.cited_chunk_id,
        snippet=stored.snippet,
        score=stored.score,
    )


def conversation_history_turns(*, scope: Scope, conversation: Conversation) -> list[dict]:
    """The recent turns to give the model for a follow-up, oldest first, as
    {"role", "content"} dicts. Answers that drew on documents the scope no longer covers are
    left out, so revoked text never returns to a prompt."""
    limit = settings.CHAT_HISTORY_MESSAGES
    recent = conversation_messages_for_user(scope=scope, conversation=conversation)[-limit:]
    return [
        {"role": m.role, "content": m.text}
        for m in recent
        if not m.redacted and not m.not_found and m.text.strip()
    ]
