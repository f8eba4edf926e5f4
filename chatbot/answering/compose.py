"""How an answer is composed from passages a search already scoped to the user.

Which passages reach the model, the prompt, reading the model's streamed output into text
and citations, the grounding check and its fallback. Generation happens in the inference
process over HTTP (no torch here). Errors: InferenceUnavailable when the inference server
is down or not ready, QuestionTooLong when the question alone exceeds the prompt budget.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from django.conf import settings

from chatbot.answering.evidence import select_evidence
from chatbot.answering.grounding import (
    NOT_FOUND_ANSWER,
    GroundingResult,
    SentenceGate,
    fallback,
    not_found_result,
    passage_for,
)
from chatbot.answering.prompts import (
    NO_SOURCE_MARKER,
    Prompt,
    Source,
    TokenCounter,
    Turn,
    build_prompt,
    prompt_budget,
    token_counter,
)
from chatbot.citations import Citation
from inference.client import (
    CompletionStream,
    InferenceClient,
    InferenceError,
    InferenceUnavailable,
    ServerModel,
)
from inference.model_files import (
    ModelKind,
    base_of_served_name,
    locate_model_dir,
    model_kind,
    model_name,
)

SNIPPET_CHARS = 240
_LEADING_MARKER = re.compile(r"^\s*\[\s*(none|\d+(?:\s*,\s*\d+)*)\s*\]\s*", re.IGNORECASE)
_MARKER_SCAN_CHARS = 16


class AnswerHit(Protocol):
    """What composing reads of a search hit (knowledge.retrieval.hits.SearchHit is one)."""

    @property
    def chunk_id(self) -> int: ...
    @property
    def document_id(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def heading(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def similarity(self) -> float | None: ...


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
    not_found: bool = False  # the not-found answer: nothing the asker may see answers this
    draft: str = ""  # what the model wrote, before the check (for the evaluation's report)
    check: str = ""  # why the check stopped the model's text, if it did


class ModelUnavailable(InferenceUnavailable):
    """The model could not write the answer (down, not ready, or gone mid-stream).
    ``sources`` are the passages it would have been shown, already within the asker's
    scope, so the user can read them instead."""

    def __init__(self, message: str, *, sources: list[Citation]):
        super().__init__(message)
        self.sources = sources


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class AnswerEvent:
    """The last event of a stream. The tokens streamed before it are ``answer.text`` less its
    citation markers, whether the model wrote it, a passage is quoted or nothing is found:
    text is streamed only once checked, and never withdrawn."""

    answer: Answer


def model_dir() -> Path | None:
    """The prepared model's directory, for its tokenizer and kind; None while it is absent
    (an external server: counts are estimated and the kind comes from settings or the
    server)."""
    return locate_model_dir(data_dir=settings.DATA_DIR, override=settings.INFERENCE_MODEL)


def configured_kind(directory: Path | None, served: ServerModel | None = None) -> ModelKind:
    """INFERENCE_MODEL_KIND, else the local model directory's, else what the server says."""
    return model_kind(
        directory, forced=settings.INFERENCE_MODEL_KIND, reported=served.kind if served else None
    )


def inference_client() -> InferenceClient:
    return InferenceClient(
        base_url=settings.INFERENCE_URL,
        model=settings.INFERENCE_MODEL_NAME,
        extra_body=settings.INFERENCE_EXTRA_BODY,
    )


def answer_from_hits(
    *,
    question: str,
    hits: Sequence[AnswerHit],
    history: Sequence = (),
    client: InferenceClient | None = None,
    counter: TokenCounter | None = None,
    kind: str | None = None,
    started: float | None = None,
) -> Iterator[TokenEvent | AnswerEvent]:
    """Stream an answer from already-authorised search hits (best first)."""
    started = time.monotonic() if started is None else started
    relevant = relevant_hits(hits)[: settings.ANSWER_MAX_SOURCES]
    if not relevant:
        answer = _not_found(started)
        yield TokenEvent(answer.text)
        yield AnswerEvent(answer)
        return
    sources = [
        _source(index, hit, question=question) for index, hit in enumerate(relevant, start=1)
    ]
    client = client or inference_client()
    served = _server_model(client)
    directory = _served_model_dir(served) if kind is None or counter is None else None
    prompt = build_prompt(
        question=question,
        sources=sources,
        history=_turns(history),
        kind=kind or configured_kind(directory, served),
        counter=counter or token_counter(directory),
        budget_tokens=prompt_budget(
            settings.INFERENCE_PROMPT_BUDGET,
            max_model_len=served.max_model_len if served else None,
        ),
        best_last=settings.ANSWER_BEST_SOURCE_LAST,
    )
    reader = _AnswerReader(prompt.answer_prefix)
    gate = SentenceGate(question=question, sources=prompt.sources)
    deltas = 0
    try:
        stream = _start(client, prompt)
        for delta in stream:
            deltas += 1
            for sentence in gate.push(reader.feed(delta), citations=reader.citation_marker):
                yield TokenEvent(sentence)
            if reader.says_no_source:  # "[none]": whatever follows is not an answer
                gate.stopped = gate.not_found = True
            if gate.stopped:  # a sentence failed the check, or the model repeats itself
                stream.close()
                break
        else:
            for sentence in gate.push(reader.flush(), citations=reader.citation_marker):
                yield TokenEvent(sentence)
            for sentence in gate.close(citations=reader.citation_marker):
                yield TokenEvent(sentence)
    except InferenceUnavailable as exc:
        scores = {hit.chunk_id: getattr(hit, "score", 0.0) for hit in hits}
        sources = [_citation(s, None, score=scores.get(s.chunk_id, 0.0)) for s in prompt.sources]
        raise ModelUnavailable(str(exc), sources=sources) from exc
    answer = _finish(
        question=question,
        prompt=prompt,
        reader=reader,
        gate=gate,
        stream=stream,
        deltas=deltas,
        started=started,
        scores={hit.chunk_id: getattr(hit, "score", 0.0) for hit in hits},
    )
    if not gate.accepted:  # a quote or the not-found answer: streamed like any other text
        yield TokenEvent(streamed_text(answer.text))
    yield AnswerEvent(answer)


def streamed_text(text: str) -> str:
    """An answer as the stream shows it: its citation markers are the citations event's."""
    return re.sub(r"\s*\[\d+(?:\s*,\s*\d+)*\]", "", text).strip()


def relevant_hits(hits: Sequence[AnswerHit]) -> list[AnswerHit]:
    """Hits worth showing the model. Retrieval already ranks within the user's scope; a
    hit with no text, a non-positive fused score, or a similarity to the question below
    settings.ANSWER_MIN_SIMILARITY carries nothing to answer from."""
    floor = settings.ANSWER_MIN_SIMILARITY
    return [
        hit
        for hit in hits
        if (hit.text or "").strip()
        and getattr(hit, "score", 1) > 0
        and (getattr(hit, "similarity", None) is None or hit.similarity >= floor)
    ]


def _served_model_dir(served: ServerModel | None) -> Path | None:
    """The local model directory, when it holds the model the server serves: the packaged
    default prepared by an earlier `make run` says nothing about a model served by vLLM
    (its tokenizer would miscount, its kind may be wrong). INFERENCE_MODEL is trusted."""
    directory = model_dir()
    if directory is None or served is None or settings.INFERENCE_MODEL:
        return directory
    served_base = base_of_served_name(served.id.rstrip("/").rsplit("/", 1)[-1])
    return directory if served_base == model_name(directory) else None


def _server_model(client: InferenceClient) -> ServerModel | None:
    """What the server says about its model (kind, context length), if it says anything.
    A server down or not ready fails the generation request too, which reports it."""
    try:
        return client.server_model()
    except (InferenceUnavailable, InferenceError):
        return None


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
    def citation_marker(self) -> str:
        """The leading "[2]" a base model chose ("" for none or an instruct model)."""
        if not self.marker or self.marker == "none":
            return ""
        return "".join(f"[{n.strip()}]" for n in self.marker.split(","))

    @property
    def says_no_source(self) -> bool:
        return self.marker == NO_SOURCE_MARKER.strip("[]")


def _finish(
    *,
    question: str,
    prompt: Prompt,
    reader: _AnswerReader,
    gate: SentenceGate,
    stream: CompletionStream,
    deltas: int,
    started: float,
    scores: dict[int, float],
) -> Answer:
    """The answer is what the gate let through (every sentence checked before it was
    streamed); when it let nothing through, a quoted passage or the not-found answer."""
    completion = stream.completion
    result: GroundingResult
    if gate.accepted:
        result = gate.result
    elif reader.says_no_source or gate.not_found:
        result = not_found_result("the model found no answer in the sources")
    else:
        result = fallback(question=question, sources=prompt.sources, reason=gate.reason)
    by_index = {source.index: source for source in prompt.sources}
    citations = [
        _citation(
            by_index[i], result, score=scores.get(by_index[i].chunk_id, 0.0), question=question
        )
        for i in result.cited
        if i in by_index
    ]
    return Answer(
        text=result.text,
        citations=citations,
        model=(completion.model if completion else "") or _served_model(stream),
        prompt_tokens=(completion.prompt_tokens if completion else 0) or prompt.prompt_tokens,
        completion_tokens=(completion.completion_tokens if completion else 0) or deltas,
        latency_ms=elapsed_ms(started),
        fallback_used=result.fallback_used,
        grounded=result.grounded,
        sources_shown=[source.chunk_id for source in prompt.sources],
        not_found=result.not_found,
        draft=reader.text,
        check=gate.reason if gate.stopped and gate.reason != gate.DONE else "",
    )


def _served_model(stream: CompletionStream) -> str:
    return getattr(stream, "model", "") or ""


def _citation(
    source: Source, result: GroundingResult | None, *, score: float, question: str = ""
) -> Citation:
    # The passage that matches the question (the quoted one, for a quote), else the start.
    snippet = passage_for(question, source) if question else source.text
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1].rstrip() + "…"
    return Citation(
        index=source.index,
        document_id=source.document_id,
        title=source.title,
        chunk_id=source.chunk_id,
        snippet=snippet,
        score=score,
    )


def _not_found(started: float) -> Answer:
    return Answer(
        text=NOT_FOUND_ANSWER,
        citations=[],
        model="",
        prompt_tokens=0,
        completion_tokens=0,
        latency_ms=elapsed_ms(started),
        fallback_used=False,
        grounded=True,
        sources_shown=[],
        not_found=True,
    )


def _source(index: int, hit: AnswerHit, *, question: str) -> Source:
    """The hit as the model reads it: its lines that match the question, within
    settings.ANSWER_EVIDENCE_CHARS (0: the whole passage)."""
    text = hit.text
    if settings.ANSWER_EVIDENCE_CHARS:
        text = select_evidence(
            question=question, text=text, max_chars=settings.ANSWER_EVIDENCE_CHARS
        )
    return Source(
        index=index,
        title=hit.title,
        text=text,
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


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
