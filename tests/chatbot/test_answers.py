"""Answers from the real default model on CPU, through the real inference server."""

import re

import pytest

from accounts.selectors import user_scope
from chatbot.models import AnswerAudit, Message
from knowledge.retrieval import chunk_search
from tests import factories
from tests.chatbot.conftest import parse_events

pytestmark = [pytest.mark.django_db, pytest.mark.model]

# The default model answers this one itself (greedy, so the same answer every run).
QUESTION = "What is the maximum hotel cost per night in London?"


def assert_valid_citations(citations, user):
    """Each citation names a passage the user may open, with its true document and title."""
    assert citations, "an answer from the sources cites them"
    for citation in citations:
        (chunk,) = factories.stored_chunks(pk=citation["chunk_id"])
        assert citation["document_id"] == chunk.document_id
        assert citation["title"] == chunk.document.title
        assert citation["snippet"] and citation["snippet"].rstrip("…") in chunk.text
        client = factories.api_client(user)
        assert client.get(f"/api/v1/chunks/{chunk.id}/").status_code == 200


def test_a_json_answer_is_cited_stored_and_audited_with_the_exact_chunks(answering, traveller):
    client = factories.api_client(traveller)

    response = client.post("/api/v1/chat/", {"message": QUESTION}, format="json")

    body = response.json()
    assert response.status_code == 200, body
    # The model answered (the fallback quotes the source, so the figure alone proves nothing).
    assert body["fallback_used"] is False, body["answer"]
    assert "180" in body["answer"]
    assert_valid_citations(body["citations"], traveller)
    assert any(f"[{c['index']}]" in body["answer"] for c in body["citations"]), body["answer"]
    message = Message.objects.get(pk=body["message_id"])
    assert message.text == body["answer"] and message.model == "gemma3-270m"
    assert message.fallback_used is False
    assert message.prompt_tokens > 0 and message.latency_ms > 0
    stored = [(c.index, c.cited_chunk_id, c.cited_document_id) for c in message.citations.all()]
    assert stored == [(c["index"], c["chunk_id"], c["document_id"]) for c in body["citations"]]

    audit = AnswerAudit.objects.get()
    expected = chunk_search(scope=user_scope(user=traveller), query=QUESTION, k=5)
    assert [r["chunk_id"] for r in audit.retrieved] == [h.chunk_id for h in expected]
    assert [r["score"] for r in audit.retrieved] == [h.score for h in expected]
    hashes = {c.pk: c.content_hash for c in factories.stored_chunks()}
    assert all(r["content_hash"] == hashes[r["chunk_id"]] for r in audit.retrieved)
    assert set(audit.shown_chunk_ids) <= {h.chunk_id for h in expected}
    assert {c["chunk_id"] for c in body["citations"]} <= set(audit.shown_chunk_ids)
    assert audit.role_ids == list(traveller.roles.values_list("id", flat=True))
    assert audit.message_id == message.id and audit.outcome == "answered"
    assert audit.fallback_used is False
    assert audit.model == "gemma3-270m" and audit.first_token_ms is not None
    assert audit.question == QUESTION and audit.username == traveller.username


def test_a_streamed_answer_sends_tokens_then_citations_then_done(answering, traveller):
    client = factories.api_client(traveller)
    first = client.post("/api/v1/chat/", {"message": "Is breakfast included?"}, format="json")
    conversation_id = first.json()["conversation_id"]

    response = client.post(
        "/api/v1/chat/",
        {"message": QUESTION, "conversation_id": conversation_id, "stream": True},
        format="json",
    )

    events = parse_events(response)
    names = [name for name, _ in events]
    assert names[-2:] == ["citations", "done"] and set(names[:-2]) == {"token"}
    citations, done = events[-2][1]["citations"], events[-1][1]
    # Text streams a checked sentence at a time and is never withdrawn: what was streamed
    # is the final answer, less its citation markers.
    streamed = "".join(data["text"] for name, data in events if name == "token")
    assert streamed.split() == re.sub(r"\s*\[\d+(?:,\s*\d+)*\]", "", done["answer"]).split()
    assert done["fallback_used"] is False, done["answer"]
    assert_valid_citations(citations, traveller)
    assert done["conversation_id"] == conversation_id  # a follow-up in the same conversation
    message = Message.objects.get(pk=done["message_id"])
    # Which figure a 270M model picks is its own affair (tests/inference checks answers);
    # here: the stored text is the authoritative one and it quotes the cited source.
    assert message.text == done["answer"] and "EUR" in done["answer"]
    assert message.fallback_used is False and message.audit.fallback_used is False
    assert [c.cited_chunk_id for c in message.citations.all()] == [c["chunk_id"] for c in citations]
    history = client.get(f"/api/v1/conversations/{conversation_id}/").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[3]["citations"] == [{**c, "available": True} for c in citations]
