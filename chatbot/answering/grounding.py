"""Check a generated answer against the sources it was given; replace it when ungrounded."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from chatbot.answering.prompts import DONT_KNOW, Source

FALLBACK_INTRO = "I could not produce a reliable answer from the model."
QUOTE_CHARS = 300

_CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")
# Numbers, amounts, dates, times and codes: any word that contains a digit ("1,350",
# "12.03.2024", "08:30", "HW-17", "32-11-00", "A320").
_FIGURE = re.compile(r"[\w$€£¥%./:,-]*\d[\w$€£¥%./:,-]*")
_DONT_KNOW = re.compile(
    r"\b(i\s+(?:do\s*n[o']t|don't|cannot|can't|could\s*not)\s+(?:know|find|tell|answer)"
    r"|not\s+(?:contained|mentioned|stated|found)\s+in\s+the\s+(?:sources|documents))",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9]{3,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_STOPWORDS = frozenset(
    (
        "the",
        "and",
        "for",
        "are",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "how",
        "does",
        "with",
        "from",
        "that",
        "this",
        "have",
        "has",
        "can",
        "any",
        "all",
        "our",
        "you",
        "your",
        "per",
        "its",
        "into",
        "there",
        "their",
        "about",
    )
)


@dataclass(frozen=True)
class GroundingResult:
    text: str
    grounded: bool
    fallback_used: bool
    cited: tuple[int, ...]  # source indices the final text cites, in order of appearance
    reason: str = ""


def cited_indices(text: str) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        for number in match.group(1).split(","):
            seen.setdefault(int(number), None)
    return tuple(seen)


def key_figures(text: str) -> set[str]:
    """Figures in ``text``, normalised, ignoring citation markers like [2]."""
    without_citations = _CITATION.sub(" ", text)
    figures = set()
    for match in _FIGURE.finditer(without_citations):
        figure = _normalise(match.group(0))
        if any(ch.isdigit() for ch in figure):
            figures.add(figure)
    return figures


def is_dont_know(text: str) -> bool:
    return DONT_KNOW.lower() in text.lower() or bool(_DONT_KNOW.search(text))


def check_answer(*, answer: str, sources: Sequence[Source], question: str) -> GroundingResult:
    """Pass a grounded answer through unchanged; replace anything else with a quoted passage.

    Grounded means: an honest "I don't know" without figures, or an answer that cites only
    sources it was shown and whose every figure appears in one of the sources it cites.
    """
    answer = answer.strip()
    by_index = {source.index: source for source in sources}
    cited = cited_indices(answer)
    figures = key_figures(answer)

    if is_dont_know(answer) and not cited and not figures:
        return GroundingResult(text=answer, grounded=True, fallback_used=False, cited=())
    reason = _ungrounded_reason(answer=answer, cited=cited, figures=figures, by_index=by_index)
    if reason is None:
        return GroundingResult(text=answer, grounded=True, fallback_used=False, cited=cited)
    return fallback(question=question, sources=sources, reason=reason)


def _ungrounded_reason(*, answer, cited, figures, by_index) -> str | None:
    if not answer:
        return "the model returned an empty answer"
    missing = [index for index in cited if index not in by_index]
    if missing:
        return f"the answer cites [{missing[0]}], which is not among its sources"
    if not cited:
        return "the answer cites no source"
    cited_text = _normalise_text(" ".join(by_index[index].text for index in cited))
    for figure in sorted(figures):
        if not _figure_in(figure, cited_text):
            return f"the figure {figure!r} does not appear in the cited sources"
    return None


def fallback(*, question: str, sources: Sequence[Source], reason: str) -> GroundingResult:
    if not sources:
        return GroundingResult(
            text=DONT_KNOW, grounded=False, fallback_used=True, cited=(), reason=reason
        )
    source = most_relevant_source(question=question, sources=sources)
    passage = most_relevant_passage(question=question, text=source.text)
    text = (
        f"{FALLBACK_INTRO} The most relevant passage is from [{source.index}] "
        f'{source.title}: "{passage}"'
    )
    return GroundingResult(
        text=text, grounded=False, fallback_used=True, cited=(source.index,), reason=reason
    )


def most_relevant_source(*, question: str, sources: Sequence[Source]) -> Source:
    terms = _terms(question)
    # Ties go to the better-ranked (earlier) source.
    return max(sources, key=lambda s: (len(terms & _terms(s.text + " " + s.title)), -s.index))


def most_relevant_passage(*, question: str, text: str) -> str:
    terms = _terms(question)
    sentences = [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]
    if not sentences:
        return ""
    best = max(range(len(sentences)), key=lambda i: (len(terms & _terms(sentences[i])), -i))
    passage = sentences[best]
    if best + 1 < len(sentences) and len(passage) + len(sentences[best + 1]) < QUOTE_CHARS:
        passage += " " + sentences[best + 1]
    if len(passage) > QUOTE_CHARS:
        passage = passage[: QUOTE_CHARS - 1].rstrip() + "…"
    return passage


def _terms(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS}


def _normalise(figure: str) -> str:
    return figure.strip(".,:;/-").lower()


def _normalise_text(text: str) -> str:
    return " ".join(text.lower().split())


def _figure_in(figure: str, text: str) -> bool:
    """Whole-figure match: "80" is not found in "180", "1350" matches "1,350"."""
    compact_figure = re.sub(r"(?<=\d),(?=\d{3}\b)", "", figure)
    compact_text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    pattern = re.compile(rf"(?<![\w.,]){re.escape(compact_figure)}(?![\w]|[.,]\d)")
    return bool(pattern.search(compact_text))
