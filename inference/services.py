"""Answer a user's question from the documents that user may see.

The web process and the Slack integration call these; generation happens in the inference
process over HTTP (no torch here). Errors: InferenceUnavailable when the inference server
is down or not ready, QuestionTooLong when the question alone exceeds the prompt budget.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from inference.client import CompletionStream, InferenceClient
from inference.grounding import check_answer, fallback
from inference.prompts import (
    NO_SOURCE_MARKER,
    Prompt,
    Source,
    TokenCounter,
    Turn,
    build_prompt,
    configured_kind,
    prompt_budget,
    token_counter,
)

NOT_FOUND_ANSWER = "I could not find this in the documents you have access to."
SNIPPET_CHARS = 240
_LEADING_MARKER = re.compile(r"^\s*\[\s*(none|\d+(?:\s*,\s*\d+)*)\s*\]\s*", re.IGNORECASE)
_MARKER_SCAN_CHARS = 16


@dataclass(frozen=True)
class Citation:
    index: int
    document_id: int
    title: str
    chunk_id: int
    snippet: str


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Citation]
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    fallback_used: bool
    grounded: bool = True
    sources_shown: list[int] = field(default_factory=list)  # chunk ids put in the prompt


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class AnswerEvent:
    """The last event of a stream. ``answer.text`` is authoritative: it differs from the
    streamed tokens when an ungrounded answer was replaced by the fallback."""

    answer: Answer


def answer_question(*, user: Any, question: str, history: Sequence = (), k: int = 5) -> Answer:
    for event in answer_question_stream(user=user, question=question, history=history, k=k):
        if isinstance(event, AnswerEvent):
            return event.answer
    raise AssertionError("answer_question_stream ended without an answer")


def answer_question_stream(
    *, user: Any, question: str, history: Sequence = (), k: int = 5
) -> Iterator[TokenEvent | AnswerEvent]:
    """Retrieve within ``user``'s scope, then stream a grounded answer.

    Only text returned by knowledge.selectors.chunk_search (the access choke point) for this
    user reaches the prompt, the answer or the citations.
    """
    from knowledge.selectors import chunk_search

    started = time.monotonic()
    hits = chunk_search(user=user, query=question, k=k)
    yield from answer_from_hits(question=question, hits=hits, history=history, started=started)


def answer_from_hits(
    *,
    question: str,
    hits: Sequence[Any],
    history: Sequence = (),
    client: InferenceClient | None = None,
    counter: TokenCounter | None = None,
    kind: str | None = None,
    started: float | None = None,
) -> Iterator[TokenEvent | AnswerEvent]:
    """Stream an answer from already-authorised search hits (best first)."""
    started = time.monotonic() if started is None else started
    if not relevant_hits(hits):
        yield AnswerEvent(_not_found(started))
        return
    sources = [_source(index, hit) for index, hit in enumerate(relevant_hits(hits), start=1)]
    prompt = build_prompt(
        question=question,
        sources=sources,
        history=_turns(history),
        kind=kind or configured_kind(),
        counter=counter or token_counter(),
        budget_tokens=prompt_budget(),
    )
    client = client or InferenceClient()
    stream = _start(client, prompt)
    reader = _AnswerReader(prompt.answer_prefix)
    for delta in stream:
        if text := reader.feed(delta):
            yield TokenEvent(text)
    if text := reader.flush():
        yield TokenEvent(text)
    yield AnswerEvent(
        _finish(question=question, prompt=prompt, reader=reader, stream=stream, started=started)
    )


# Below this cosine similarity to the question a passage is unrelated to it (MiniLM scores
# unrelated text around 0.0-0.25; the demo's answering passages score 0.41-0.77).
MIN_SIMILARITY = float(os.environ.get("ANSWER_MIN_SIMILARITY", "0.25"))


def relevant_hits(hits: Sequence[Any]) -> list[Any]:
    """Hits worth showing the model. Retrieval already ranks within the user's scope; a
    hit with no text, a non-positive fused score, or a similarity to the question below
    MIN_SIMILARITY carries nothing to answer from."""
    return [
        hit
        for hit in hits
        if (hit.text or "").strip()
        and getattr(hit, "score", 1) > 0
        and (getattr(hit, "similarity", None) is None or hit.similarity >= MIN_SIMILARITY)
    ]


def _start(client: InferenceClient, prompt: Prompt) -> CompletionStream:
    if prompt.kind == "instruct":
        return client.stream_chat(
            list(prompt.messages), max_tokens=prompt.max_answer_tokens, stop=prompt.stop
        )
    return client.stream(prompt.text, max_tokens=prompt.max_answer_tokens, stop=prompt.stop)


class _AnswerReader:
    """Turns a base model's "[2] answer..." into streamed "answer..." plus citations [2].

    The leading marker is held back until complete, so "[none]" never reaches the user.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.raw = prefix
        self.marker: str | None = None if prefix else ""
        self.body: list[str] = []

    def feed(self, delta: str) -> str:
        if self.marker is not None:
            self.body.append(delta)
            return delta
        self.raw += delta
        match = _LEADING_MARKER.match(self.raw)
        if match and (match.end() < len(self.raw) or len(self.raw) >= _MARKER_SCAN_CHARS):
            self.marker = match.group(1).lower()
            return self._emit(self.raw[match.end() :])
        if not match and ("]" in self.raw or len(self.raw) >= _MARKER_SCAN_CHARS):
            self.marker = ""
            return self._emit(self.raw)
        return ""

    def flush(self) -> str:
        if self.marker is not None:
            return ""
        match = _LEADING_MARKER.match(self.raw)
        self.marker = match.group(1).lower() if match else ""
        return self._emit(self.raw[match.end() :] if match else self.raw)

    def _emit(self, text: str) -> str:
        text = text.lstrip() if not self.body else text
        if text:
            self.body.append(text)
        return text

    @property
    def text(self) -> str:
        body = "".join(self.body).strip()
        if self.marker and self.marker != "none":
            numbers = [n.strip() for n in self.marker.split(",")]
            missing = [n for n in numbers if f"[{n}]" not in body]
            if missing:
                body = f"{body} {''.join(f'[{n}]' for n in missing)}".strip()
        return body

    @property
    def says_no_source(self) -> bool:
        return self.marker == NO_SOURCE_MARKER.strip("[]")


def _finish(
    *,
    question: str,
    prompt: Prompt,
    reader: _AnswerReader,
    stream: CompletionStream,
    started: float,
) -> Answer:
    completion = stream.completion
    result = check_answer(answer=reader.text, sources=prompt.sources, question=question)
    if reader.says_no_source and not result.fallback_used and result.cited:
        # "[none]" and then citing a source contradicts itself.
        result = fallback(question=question, sources=prompt.sources, reason="contradictory")
    by_index = {source.index: source for source in prompt.sources}
    citations = [_citation(by_index[i], result) for i in result.cited if i in by_index]
    return Answer(
        text=result.text,
        citations=citations,
        model=completion.model if completion else "",
        prompt_tokens=(completion.prompt_tokens if completion else 0) or prompt.prompt_tokens,
        completion_tokens=completion.completion_tokens if completion else 0,
        latency_ms=_elapsed_ms(started),
        fallback_used=result.fallback_used,
        grounded=result.grounded,
        sources_shown=[source.chunk_id for source in prompt.sources],
    )


def _citation(source: Source, result: Any) -> Citation:
    snippet = source.text
    if result.fallback_used and '"' in result.text:
        snippet = result.text.split('"', 1)[1].rsplit('"', 1)[0]
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1].rstrip() + "…"
    return Citation(
        index=source.index,
        document_id=source.document_id,
        title=source.title,
        chunk_id=source.chunk_id,
        snippet=snippet,
    )


def _not_found(started: float) -> Answer:
    return Answer(
        text=NOT_FOUND_ANSWER,
        citations=[],
        model="",
        prompt_tokens=0,
        completion_tokens=0,
        latency_ms=_elapsed_ms(started),
        fallback_used=False,
        grounded=True,
        sources_shown=[],
    )


def _source(index: int, hit: Any) -> Source:
    return Source(
        index=index,
        title=hit.title,
        text=hit.text,
        heading=getattr(hit, "heading", "") or "",
        chunk_id=hit.chunk_id,
        document_id=hit.document_id,
    )


def _turns(history: Sequence) -> list[Turn]:
    """Accepts Turn objects, {"role", "content"} dicts or (role, content) pairs."""
    turns = []
    for item in history:
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, dict):
            turns.append(Turn(item["role"], item["content"]))
        else:
            role, content = item
            turns.append(Turn(role, content))
    return [turn for turn in turns if turn.role in ("user", "assistant") and turn.content]


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
