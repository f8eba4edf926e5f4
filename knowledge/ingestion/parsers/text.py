"""Plain text: blank-line separated paragraphs, sectioned by underlined (setext) headings."""

from __future__ import annotations

import re

from knowledge.ingestion.parsers.base import (
    ParsedDocument,
    _clean_title,
    _SectionBuilder,
    clean_text,
)
from knowledge.ingestion.parsers.encoding import _decode_text

_SETEXT_UNDERLINE = re.compile(r"^(=+|-+)\s*$")
_SETEXT_MAX_HEADING_CHARS = 120


def parse(data: bytes, *, max_unpacked_bytes: int, max_xml_bytes: int) -> ParsedDocument:
    """Paragraphs under the headings marked the way plain text marks them: a short line
    underlined with === (level 1) or --- (level 2)."""
    lines = clean_text(_decode_text(data)).split("\n")
    builder = _SectionBuilder()
    title = None
    paragraph: list[str] = []
    for index, line in enumerate(lines):
        if _is_setext_heading(lines, index):
            builder.paragraph("\n".join(paragraph))
            paragraph = []
            level = 1 if lines[index + 1].startswith("=") else 2
            title = title or (line if level == 1 else None)
            builder.heading(level=level, text=line)
        elif index > 0 and _is_setext_heading(lines, index - 1):
            continue  # the underline
        elif line:
            paragraph.append(line)
        else:
            builder.paragraph("\n".join(paragraph))
            paragraph = []
    builder.paragraph("\n".join(paragraph))
    return ParsedDocument(sections=builder.sections(), title=_clean_title(title))


def _is_setext_heading(lines: list[str], index: int) -> bool:
    line = lines[index]
    return (
        0 < len(line) <= _SETEXT_MAX_HEADING_CHARS
        and index + 1 < len(lines)
        and len(lines[index + 1]) >= 3
        and _SETEXT_UNDERLINE.match(lines[index + 1]) is not None
        and (index == 0 or not lines[index - 1])
    )
