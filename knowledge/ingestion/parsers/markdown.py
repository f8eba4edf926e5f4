"""Markdown (CommonMark plus tables): sectioned by ATX and setext headings."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token

from knowledge.ingestion.parsers.base import ParsedDocument, _clean_title, _SectionBuilder
from knowledge.ingestion.parsers.encoding import _decode_text


def parse(data: bytes, *, max_unpacked_bytes: int, max_xml_bytes: int) -> ParsedDocument:
    tokens = MarkdownIt("commonmark").enable("table").parse(_decode_text(data))
    builder = _SectionBuilder()
    title = None
    row: list[str] | None = None
    rows: list[list[str]] = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            level = int(token.tag[1])
            heading = _markdown_inline_text(tokens[index + 1])
            if level == 1 and title is None:
                title = heading
            builder.heading(level=level, text=heading)
        elif token.type == "inline":
            if row is not None:
                row.append(_markdown_inline_text(token))
            elif tokens[index - 1].type == "paragraph_open":
                builder.paragraph(_markdown_inline_text(token))
        elif token.type in ("fence", "code_block"):
            builder.paragraph(token.content, keep_spaces=True)
        elif token.type == "html_block":
            # Imported here: BeautifulSoup costs each parse's fresh child ~0.3 s to import,
            # and most Markdown has no raw HTML.
            from knowledge.ingestion.parsers.html import _html_fragment_text

            builder.paragraph(_html_fragment_text(token.content))
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            rows.append(row or [])
            row = None
        elif token.type == "table_close":
            builder.table(rows)
            rows = []
    return ParsedDocument(sections=builder.sections(), title=_clean_title(title))


def _markdown_inline_text(token: Token) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return "".join(parts)
