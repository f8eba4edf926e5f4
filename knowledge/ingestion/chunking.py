"""Token-aware chunking for the embedding model (MiniLM: 256 tokens at most).

Chunks never cross a section (a heading or a PDF page), carry that section's heading path
as context, and overlap the previous chunk of the same section by a sentence or two.

Tables (lines holding " | ", the first one the header, as the parsers write them) stay
tables: each row is kept whole on its own line, prose is never joined onto a table line, a
table that fits in one chunk is not split, and every chunk that holds rows of a table
starts them with that table's header line, so no row loses its column names. The one row
ever cut is one too long to sit under its header in a chunk; each piece has the header.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from knowledge.ingestion.parsers.base import TABLE_CELL_SEPARATOR

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
        units = _units(section.text, count=count_tokens, chunk_tokens=chunk_tokens)
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


@dataclass(frozen=True, eq=False)
class _Table:
    header: str
    tokens: int  # the header's
    total: int  # the header's and every row's


@dataclass(frozen=True)
class _Unit:
    """What packing moves: a sentence, a table row (or its header), or a line of its own."""

    text: str
    tokens: int
    table: _Table | None = None
    own_line: bool = False  # a table row, header or lone pipe line: never joined to prose


def _units(text: str, *, count: Callable[[str], int], chunk_tokens: int) -> list[_Unit]:
    """Paragraphs, split into sentences, and tables, split into rows, as packing units."""
    units: list[_Unit] = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.strip().split("\n")
        run: list[str] = []
        for index, line in enumerate(lines):
            run.append(line)
            is_row = TABLE_CELL_SEPARATOR in line
            ends = index + 1 == len(lines) or (TABLE_CELL_SEPARATOR in lines[index + 1]) != is_row
            if not ends:
                continue
            if is_row:
                rows = [row.strip() for row in run]
                units.extend(_table_units(rows, count=count, chunk_tokens=chunk_tokens))
            else:
                units.extend(_sentence_units("\n".join(run), count=count, limit=chunk_tokens))
            run = []
    return units


def _sentence_units(text: str, *, count: Callable[[str], int], limit: int) -> list[_Unit]:
    units = []
    for sentence in _SENTENCE_END.split(text.strip()):
        sentence = sentence.strip()
        if not sentence:
            continue
        n = count(sentence)
        if n > limit:
            units.extend(_Unit(p, count(p)) for p in _split_long(sentence, limit, count))
        else:
            units.append(_Unit(sentence, n))
    return units


def _table_units(
    lines: list[str], *, count: Callable[[str], int], chunk_tokens: int
) -> list[_Unit]:
    header, *rows = lines
    header_tokens = count(header)
    if not rows or header_tokens > chunk_tokens // 2:
        # A lone pipe line, or a header too long to repeat: lines of their own, no header.
        return [
            _Unit(piece, count(piece), own_line=True)
            for line in lines
            for piece in _split_long(line, chunk_tokens, count)
        ]
    room = chunk_tokens - header_tokens
    row_units: list[tuple[str, int]] = []
    for row in rows:
        n = count(row)
        # A row that cannot sit under its header in one chunk is the one thing cut.
        pieces = [row] if n <= room else _split_long(row, room, count)
        row_units.extend((piece, n if len(pieces) == 1 else count(piece)) for piece in pieces)
    table = _Table(header, header_tokens, header_tokens + sum(n for _, n in row_units))
    return [_Unit(text, n, table=table, own_line=True) for text, n in row_units]


def _pack(
    units: Sequence[_Unit], *, chunk_tokens: int, overlap_tokens: int
) -> list[tuple[str, int]]:
    chunks: list[tuple[str, int]] = []
    current: list[_Unit] = []
    fresh = 0  # units in `current` not already emitted in a previous chunk
    for unit in units:
        table = unit.table
        size = sum(u.tokens for u in current)
        needs_header = table is not None and not any(u.table is table for u in current)
        cost = unit.tokens + (table.tokens if needs_header else 0)
        # A table that fits in a chunk of its own starts one rather than being split.
        starts_whole_table = needs_header and table.total <= chunk_tokens
        if current and size + (table.total if starts_whole_table else cost) > chunk_tokens:
            if fresh:
                chunks.append(_join(current))
            room = chunk_tokens - (table.total if starts_whole_table else cost)
            current = _overlap_tail(current, overlap_tokens, room=room)
            fresh = 0
        if table is not None and not any(u.table is table for u in current):
            current.append(_Unit(table.header, table.tokens, table, own_line=True))
        current.append(unit)
        fresh += 1
    if current and fresh:
        chunks.append(_join(current))
    return chunks


def _overlap_tail(current: list[_Unit], overlap_tokens: int, *, room: int) -> list[_Unit]:
    """The last sentences of `current`, to repeat at the start of the next chunk; never a
    table line (a row repeated there would stand without its header)."""
    tail: list[_Unit] = []
    size = 0
    for unit in reversed(current):
        if unit.own_line or size + unit.tokens > min(overlap_tokens, room):
            break
        tail.insert(0, unit)
        size += unit.tokens
    return tail


def _join(units: list[_Unit]) -> tuple[str, int]:
    # Sentences are joined with spaces, table lines with line breaks. The token count is
    # (nearly) the sum; the sum is an upper bound.
    parts: list[str] = []
    for index, unit in enumerate(units):
        if index:
            parts.append("\n" if unit.own_line or units[index - 1].own_line else " ")
        parts.append(unit.text)
    return "".join(parts), sum(u.tokens for u in units)
