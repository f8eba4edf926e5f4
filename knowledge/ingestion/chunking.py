"""Token-aware chunking for the embedding model (MiniLM: 256 tokens at most).

Chunks never cross a section (a heading or a PDF page), carry that section's heading path
as context, and overlap the previous chunk of the same section by a sentence or two.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Leaves room for the heading prefix and the [CLS]/[SEP] tokens within the 256-token limit.
CHUNK_TOKENS = 200
OVERLAP_TOKENS = 40
HEADING_TOKENS = 40

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=[\"'(\[]?[A-Z0-9])")


class SectionLike(Protocol):
    text: str
    heading: str
    page: int | None


@dataclass(frozen=True)
class ChunkDraft:
    position: int
    text: str
    heading: str
    page: int | None
    token_count: int

    @property
    def embedding_input(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text


def _units(text: str) -> list[str]:
    """Paragraphs, split into sentences, as the packing units."""
    units = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if paragraph:
            units.extend(s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip())
    return units


def _split_long(unit: str, limit: int, count: Callable[[str], int]) -> list[str]:
    """Split a unit longer than limit tokens on word boundaries."""
    words = unit.split()
    pieces, current = [], []
    for word in words:
        current.append(word)
        if count(" ".join(current)) > limit and len(current) > 1:
            current.pop()
            pieces.append(" ".join(current))
            current = [word]
    if current:
        pieces.append(" ".join(current))
    return pieces


def _trim_heading(heading: str, count: Callable[[str], int]) -> str:
    while heading and count(heading) > HEADING_TOKENS:
        parts = heading.split(" > ")
        heading = " > ".join(parts[1:]) if len(parts) > 1 else heading[: len(heading) // 2]
    return heading


def chunk_sections(
    sections: Iterable[SectionLike],
    *,
    count_tokens: Callable[[str], int],
    chunk_tokens: int = CHUNK_TOKENS,
    overlap_tokens: int = OVERLAP_TOKENS,
) -> list[ChunkDraft]:
    drafts: list[ChunkDraft] = []
    for section in sections:
        heading = _trim_heading(" ".join(section.heading.split()), count_tokens)
        units: list[tuple[str, int]] = []
        for unit in _units(section.text):
            n = count_tokens(unit)
            if n > chunk_tokens:
                units.extend(
                    (p, count_tokens(p)) for p in _split_long(unit, chunk_tokens, count_tokens)
                )
            else:
                units.append((unit, n))
        for text, tokens in _pack(units, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens):
            drafts.append(
                ChunkDraft(
                    position=len(drafts),
                    text=text,
                    heading=heading,
                    page=section.page,
                    token_count=tokens,
                )
            )
    return drafts


def _pack(
    units: Sequence[tuple[str, int]], *, chunk_tokens: int, overlap_tokens: int
) -> list[tuple[str, int]]:
    chunks: list[tuple[str, int]] = []
    current: list[tuple[str, int]] = []
    fresh = 0  # units in `current` not already emitted in a previous chunk
    for unit in units:
        size = sum(n for _, n in current)
        if current and size + unit[1] > chunk_tokens:
            if fresh:
                chunks.append(_join(current))
            current = _overlap_tail(current, overlap_tokens, room=chunk_tokens - unit[1])
            fresh = 0
        current.append(unit)
        fresh += 1
    if current and fresh:
        chunks.append(_join(current))
    return chunks


def _overlap_tail(
    current: list[tuple[str, int]], overlap_tokens: int, *, room: int
) -> list[tuple[str, int]]:
    tail: list[tuple[str, int]] = []
    size = 0
    for unit in reversed(current):
        if size + unit[1] > min(overlap_tokens, room):
            break
        tail.insert(0, unit)
        size += unit[1]
    return tail


def _join(units: list[tuple[str, int]]) -> tuple[str, int]:
    # Joined with spaces the token count is (nearly) the sum; the sum is an upper bound.
    return " ".join(u for u, _ in units), sum(n for _, n in units)
