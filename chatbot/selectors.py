"""Reads of conversations for their owner. Everything here is scoped to the acting user."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.http import Http404

from chatbot.models import Conversation, Feedback, Message, MessageCitation
from knowledge.models import Chunk
from knowledge.selectors import document_list_for_user, visible_chunk_ids

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
class CitationView:
    index: int
    available: bool
    document_id: int | None = None
    title: str = ""
    chunk_id: int | None = None
    snippet: str = ""
    score: float | None = None

    def as_dict(self) -> dict:
        """The API shape: an unavailable citation says nothing but its number."""
        if not self.available:
            return {"index": self.index, "available": False}
        return {
            "index": self.index,
            "available": True,
            "document_id": self.document_id,
            "title": self.title,
            "chunk_id": self.chunk_id,
            "snippet": self.snippet,
        }


@dataclass(frozen=True)
class MessageView:
    id: int
    role: str
    text: str
    created_at: object
    citations: list[CitationView] = field(default_factory=list)
    model: str = ""
    fallback_used: bool = False
    not_found: bool = False
    redacted: bool = False
    scoped_roles: list[str] = field(default_factory=list)
    feedback: dict | None = None


def conversation_messages_for_user(*, user, conversation: Conversation) -> list[MessageView]:
    """The conversation's messages with every citation re-checked against the user's roles
    *now*: a passage they can no longer see is reported only as unavailable (no title, no
    text), and an answer that drew on a document they can no longer see is hidden."""
    messages = list(
        conversation.messages.prefetch_related(
            Prefetch("citations", queryset=MessageCitation.objects.order_by("index")),
            Prefetch("feedback", queryset=Feedback.objects.filter(user_id=user.pk)),
        )
    )
    cited = [c for m in messages for c in m.citations.all()]
    visible = visible_chunk_ids(user=user, chunk_ids=[c.cited_chunk_id for c in cited])
    visible_documents = _visible_document_ids(
        user=user, document_ids={c.cited_document_id for c in cited}
    )
    views = []
    for message in messages:
        citations = [
            CitationView(
                index=c.index,
                available=True,
                document_id=c.cited_document_id,
                title=c.title,
                chunk_id=c.cited_chunk_id,
                snippet=c.snippet,
                score=c.score,
            )
            if c.cited_chunk_id in visible
            else CitationView(index=c.index, available=False)
            for c in message.citations.all()
        ]
        redacted = any(
            c.cited_document_id not in visible_documents for c in message.citations.all()
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


def _visible_document_ids(*, user, document_ids: set[int]) -> set[int]:
    if not document_ids:
        return set()
    visible = document_list_for_user(user=user).filter(pk__in=document_ids)
    return set(visible.values_list("pk", flat=True))


def conversation_history_turns(*, user, conversation: Conversation) -> list[dict]:
    """The recent turns to give the model for a follow-up, oldest first, as
    {"role", "content"} dicts. Answers that drew on documents the user can no longer see are
    left out, so revoked text never returns to a prompt."""
    limit = settings.CHAT_HISTORY_MESSAGES
    recent = conversation_messages_for_user(user=user, conversation=conversation)[-limit:]
    return [
        {"role": m.role, "content": m.text}
        for m in recent
        if not m.redacted and not m.not_found and m.text.strip()
    ]


def chunk_content_hashes_unchecked(*, chunk_ids: list[int]) -> dict[int, str]:
    """Content hashes for the audit trail only; never returned to a user. The ids come
    from a search already scoped to the user."""
    return dict(Chunk.objects.filter(pk__in=chunk_ids).values_list("id", "content_hash"))
