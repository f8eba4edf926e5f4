"""Changes to conversations: answering a question (with its audit record) and feedback.

chat_reply_stream is the one way an answer is made for the chat API, the web UI and the
`ask` command. Retrieval goes through knowledge.retrieval.chunk_search (the access choke
point) with the request's Scope; only its hits reach the prompt, the answer, the citations
and the stored conversation, and the audit record names that same scope.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.http import Http404

from accounts import policy
from accounts.access_log import Action, log_access
from accounts.policy import Actor
from accounts.selectors import Scope
from chatbot.answering.compose import (
    Answer,
    AnswerEvent,
    TokenEvent,
    answer_from_hits,
    elapsed_ms,
    inference_client,
)
from chatbot.citations import Citation
from chatbot.models import AnswerAudit, Conversation, Feedback, Message, MessageCitation
from chatbot.selectors import conversation_history_turns
from config.metrics import observe_answer
from inference.client import InferenceUnavailable
from knowledge.retrieval import SearchHit, chunk_search
from knowledge.selectors import (
    chunk_content_hashes_unchecked,
    existing_chunk_ids,
    existing_document_ids,
)

logger = logging.getLogger(__name__)

TITLE_CHARS = 80


@dataclass(frozen=True)
class ChatReply:
    """The last event of chat_reply_stream: the stored answer."""

    conversation_id: int
    message_id: int
    answer: str
    citations: list[Citation]
    fallback_used: bool
    not_found: bool
    scoped_roles: list[str] = field(default_factory=list)


def conversation_title(question: str) -> str:
    text = " ".join(question.split())
    if len(text) <= TITLE_CHARS:
        return text
    return text[: TITLE_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


def chat_reply_stream(
    *,
    user,
    scope: Scope,
    question: str,
    conversation: Conversation | None = None,
    surface: str = AnswerAudit.Surface.WEB,
    channel: str = "",
) -> Iterator[TokenEvent | ChatReply]:
    """Answer ``question`` for ``user`` within ``scope`` (user_scope of that same user):
    yields TokenEvents, then one ChatReply.

    ``conversation`` must already be the user's own (selectors.access_conversation); None
    starts a new one. The conversation and both messages are stored only once the answer is
    complete, in one transaction. An AnswerAudit row is written for every attempt, including
    ones that fail (InferenceUnavailable is re-raised) or that the client abandons (closing
    the generator closes the connection to the inference server, which stops generating).
    """
    if scope.user_id != user.pk:
        raise ValueError("the scope must be the asking user's own")
    started = time.monotonic()
    question = question.strip()
    history = (
        conversation_history_turns(scope=scope, conversation=conversation) if conversation else []
    )
    hits, events = answer_events(scope=scope, question=question, history=history, started=started)
    audit = AnswerAudit(
        user=user,
        username=user.get_username(),
        role_ids=list(scope.role_ids),
        question=question,
        conversation=conversation,
        retrieved=_retrieved(hits),
        retrieval_ms=elapsed_ms(started),
        outcome=AnswerAudit.Outcome.CANCELLED,
        surface=surface,
        channel=channel,
    )
    answer: Answer | None = None
    try:
        # closing(): a client that goes away closes this generator, which must close the
        # HTTP stream from the inference server at once (that stops the generation there).
        with closing(events):
            for event in events:
                if isinstance(event, AnswerEvent):
                    _assert_cites_only_shown(event.answer)
                    answer = event.answer
                else:
                    if audit.first_token_ms is None:
                        audit.first_token_ms = elapsed_ms(started)
                    yield event
    except InferenceUnavailable as exc:
        audit.outcome, audit.error = AnswerAudit.Outcome.UNAVAILABLE, str(exc)
        raise
    except Exception as exc:
        audit.outcome, audit.error = AnswerAudit.Outcome.FAILED, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if answer is None:
            audit.total_ms = elapsed_ms(started)
            audit.save()
            _observe(audit)
    reply = _store_answer(
        user=user,
        scope=scope,
        question=question,
        conversation=conversation,
        answer=answer,
        audit=audit,
        started=started,
    )
    _observe(audit)
    yield reply


def answer_events(
    *, scope: Scope, question: str, history: Sequence = (), started: float
) -> tuple[list[SearchHit], Iterator[TokenEvent | AnswerEvent]]:
    """The answer path every surface shares (chat API, web, Slack, `ask`, `evaluate`):
    retrieval within ``scope``, then the model's streamed answer and its grounding check.
    Returns the hits at once and the events lazily (nothing is generated until read)."""
    hits = chunk_search(
        scope=scope, query=retrieval_query(question, history), k=settings.CHAT_RETRIEVAL_K
    )
    events = answer_from_hits(
        question=question, hits=hits, history=history, client=inference_client(), started=started
    )
    return hits, events


FOLLOW_UP_WORDS = 8
_FOLLOW_UP_START = re.compile(r"^(and|but|also|what about|how about|then|so)\b", re.IGNORECASE)


def retrieval_query(question: str, history: Sequence = ()) -> str:
    """What to search for: the question, and for a short follow-up ("And for the EU?") the
    asker's previous question too, which names what "it" is. History holds only turns the
    scope may still read (selectors.conversation_history_turns)."""
    asked = [_turn_text(t) for t in history if _turn_role(t) == "user"]
    if not asked:
        return question
    if len(question.split()) > FOLLOW_UP_WORDS and not _FOLLOW_UP_START.match(question.strip()):
        return question
    return f"{asked[-1]} {question}"


def _turn_role(turn) -> str:
    if isinstance(turn, dict):
        return turn["role"]
    return turn.role if hasattr(turn, "role") else turn[0]


def _turn_text(turn) -> str:
    if isinstance(turn, dict):
        return turn["content"]
    return turn.content if hasattr(turn, "content") else turn[1]


def chat_reply(
    *,
    user,
    scope: Scope,
    question: str,
    conversation: Conversation | None = None,
    surface: str = AnswerAudit.Surface.WEB,
    channel: str = "",
) -> ChatReply:
    for event in chat_reply_stream(
        user=user,
        scope=scope,
        question=question,
        conversation=conversation,
        surface=surface,
        channel=channel,
    ):
        if isinstance(event, ChatReply):
            return event
    raise AssertionError("chat_reply_stream ended without a reply")


@transaction.atomic
def _store_answer(
    *,
    user,
    scope: Scope,
    question: str,
    conversation: Conversation | None,
    answer: Answer,
    audit: AnswerAudit,
    started: float,
) -> ChatReply:
    if conversation is None:
        conversation = Conversation.objects.create(owner=user, title=conversation_title(question))
    else:
        conversation.save(update_fields=["updated_at"])
    not_found = answer.not_found
    scoped_roles = list(scope.role_names)
    Message.objects.create(conversation=conversation, role=Message.Role.USER, text=question)
    message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        text=answer.text,
        model=answer.model,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        latency_ms=answer.latency_ms,
        fallback_used=answer.fallback_used,
        not_found=not_found,
        scoped_roles=scoped_roles,
    )
    # A chunk replaced by re-ingestion since retrieval keeps its id but loses the link.
    live_chunks = existing_chunk_ids(chunk_ids=[c.chunk_id for c in answer.citations])
    live_documents = existing_document_ids(document_ids=[c.document_id for c in answer.citations])
    MessageCitation.objects.bulk_create(
        MessageCitation(
            message=message,
            index=c.index,
            chunk_id=c.chunk_id if c.chunk_id in live_chunks else None,
            cited_chunk_id=c.chunk_id,
            document_id=c.document_id if c.document_id in live_documents else None,
            cited_document_id=c.document_id,
            title=c.title,
            snippet=c.snippet,
            score=c.score,
        )
        for c in answer.citations
    )
    audit.conversation = conversation
    audit.message = message
    audit.shown_chunk_ids = list(answer.sources_shown)
    audit.model = answer.model
    audit.outcome = AnswerAudit.Outcome.NOT_FOUND if not_found else AnswerAudit.Outcome.ANSWERED
    audit.prompt_tokens = answer.prompt_tokens
    audit.completion_tokens = answer.completion_tokens
    audit.fallback_used = answer.fallback_used
    audit.total_ms = elapsed_ms(started)
    audit.save()
    return ChatReply(
        conversation_id=conversation.pk,
        message_id=message.pk,
        answer=answer.text,
        citations=list(answer.citations),
        fallback_used=answer.fallback_used,
        not_found=not_found,
        scoped_roles=scoped_roles,
    )


def _observe(audit: AnswerAudit) -> None:
    """The stored attempt, counted for /metrics (its timings are the audit row's)."""
    observe_answer(
        surface=audit.surface,
        outcome=audit.outcome,
        total_ms=audit.total_ms,
        first_token_ms=audit.first_token_ms,
        completion_tokens=audit.completion_tokens,
    )


def _assert_cites_only_shown(answer: Answer) -> None:
    """A stored answer cites only passages its prompt showed: whatever the question or a
    document says, a citation names a retrieved passage (the grounding check already turns an
    answer citing an unknown number into the fallback; this is the last line before storage).
    """
    shown = set(answer.sources_shown)
    stray = [c.chunk_id for c in answer.citations if c.chunk_id not in shown]
    if stray:
        logger.critical("answer cites passages it was not shown: %s", stray)
        raise AssertionError("the answer cites a passage that was not shown")


def _retrieved(hits: list[SearchHit]) -> list[dict]:
    hashes = chunk_content_hashes_unchecked(chunk_ids=[hit.chunk_id for hit in hits])
    return [
        {
            "rank": rank,
            "chunk_id": hit.chunk_id,
            "document_id": hit.document_id,
            "content_hash": hashes.get(hit.chunk_id, ""),
            "score": hit.score,
        }
        for rank, hit in enumerate(hits, start=1)
    ]


def feedback_set(
    *, user, message: Message, rating: str, comment: str = ""
) -> tuple[Feedback, bool]:
    """The user's one rating of an answer, created or replaced. ``message`` must come from
    selectors.access_message (the user's own answer)."""
    return Feedback.objects.update_or_create(
        message=message, user=user, defaults={"rating": rating, "comment": comment.strip()}
    )


def conversation_read_for_audit(*, actor: Actor, conversation_id: int) -> Conversation:
    """Another user's conversation, as stored, for an auditor: needs the audit permission
    (ManagementDenied, 403), answers Http404 for an unknown id, and logs every read."""
    policy.check_audit(actor)
    conversation = Conversation.objects.select_related("owner").filter(pk=conversation_id).first()
    if conversation is None:
        raise Http404("No conversation with this id.")
    log_access(
        actor=actor,
        action=Action.CONVERSATION_READ,
        target_type="conversation",
        target_id=conversation.pk,
        target_label=f"{conversation.owner.username}: {conversation.title}",
    )
    return conversation
