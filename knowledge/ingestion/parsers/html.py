"""HTML: visible block text in document order, sectioned by h1-h6; tables kept as rows."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from knowledge.ingestion.parsers.base import ParsedDocument, _clean_title, _SectionBuilder
from knowledge.ingestion.parsers.encoding import _reject_binary

_HTML_DROP = {
    "nav",
    "script",
    "style",
    "noscript",
    "template",
    "head",
    "svg",
    "math",
    "iframe",
    "object",
    "embed",
    "canvas",
    "button",
    "select",
    "textarea",
}
_HTML_BLOCKS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "html",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "section",
    "summary",
    "ul",
}
_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_WHITESPACE = re.compile(r"\s+")
_END_OF_BLOCK = object()
# HTML's own limit on colspan is 1000; a wider span only multiplies text.
MAX_COLSPAN = 100


def parse(data: bytes, *, max_unpacked_bytes: int, max_xml_bytes: int) -> ParsedDocument:
    _reject_binary(data)
    soup = BeautifulSoup(data, "html.parser")
    title_tag = soup.find("title")
    title = _clean_title(title_tag.get_text(" ")) if title_tag else None
    builder = _SectionBuilder()
    first_h1 = _walk_html(soup, builder)
    return ParsedDocument(sections=builder.sections(), title=title or _clean_title(first_h1))


def _walk_html(soup: BeautifulSoup, builder: _SectionBuilder) -> str | None:
    """Walk the tree iteratively (deeply nested markup must not hit the recursion limit)."""
    first_h1 = None
    inline: list[str] = []

    def flush() -> None:
        builder.paragraph("".join(inline))
        inline.clear()

    stack: list[object] = list(reversed(soup.contents))
    while stack:
        node = stack.pop()
        if node is _END_OF_BLOCK:
            flush()
        elif isinstance(node, NavigableString):
            if type(node) is NavigableString:  # not a Comment, CData, Doctype, ...
                inline.append(_WHITESPACE.sub(" ", str(node)))
        elif isinstance(node, Tag):
            name = node.name.lower()
            if name in _HTML_DROP:
                continue
            if name in _HTML_HEADINGS:
                flush()
                text = node.get_text(" ")
                if name == "h1" and first_h1 is None:
                    first_h1 = text
                builder.heading(level=_HTML_HEADINGS[name], text=text)
            elif name == "table":
                flush()
                caption = node.find("caption")
                if caption is not None and caption.find_parent("table") is node:
                    builder.paragraph(_html_text(caption))
                rows, header_rows = _html_table_rows(node)
                builder.table(rows, header_rows=header_rows)
            elif name == "pre":
                flush()
                builder.paragraph(node.get_text(), keep_spaces=True)
            elif name == "br":
                inline.append("\n")
            elif name in _HTML_BLOCKS:
                flush()
                stack.append(_END_OF_BLOCK)
                stack.extend(reversed(node.contents))
            else:
                stack.extend(reversed(node.contents))
    flush()
    return first_h1


def _html_table_rows(table: Tag) -> tuple[list[list[str]], int]:
    """The table on its grid (a cell spanning columns or rows repeated in each slot it
    covers), and how many rows at its top are its header: the rows of its <thead>, else
    its leading rows made only of <th> cells, else the first row."""
    grid: list[list[str]] = []
    pending: dict[int, tuple[str, int]] = {}  # column -> (text, rows still to cover)
    header_rows = 0
    in_header = True
    rows = [row for row in table.find_all("tr") if row.find_parent("table") is table]
    for index, row in enumerate(rows):
        cells = row.find_all(["td", "th"], recursive=False)
        section = row.parent.name if isinstance(row.parent, Tag) else ""
        header_row = section == "thead" or (
            section != "tfoot" and bool(cells) and all(cell.name == "th" for cell in cells)
        )
        if in_header and header_row:
            header_rows += 1
        else:
            in_header = False
        slots: list[str] = []
        column = 0
        for cell in cells:
            while column in pending:
                column = _html_take_pending(pending, column, slots)
            text = _html_text(cell)
            colspan = _html_span(cell.get("colspan"), limit=MAX_COLSPAN)
            rowspan = min(_html_span(cell.get("rowspan"), limit=len(rows)), len(rows) - index)
            for _ in range(colspan):
                slots.append(text)
                if rowspan > 1:
                    pending[column] = (text, rowspan - 1)
                column += 1
        while pending and column <= max(pending):
            if column in pending:
                column = _html_take_pending(pending, column, slots)
            else:
                slots.append("")
                column += 1
        grid.append(slots)
    return grid, header_rows or 1


def _html_take_pending(pending: dict[int, tuple[str, int]], column: int, slots: list[str]) -> int:
    text, left = pending.pop(column)
    slots.append(text)
    if left > 1:
        pending[column] = (text, left - 1)
    return column + 1


def _html_span(value, *, limit: int) -> int:
    try:
        span = int(str(value).strip())
    except (TypeError, ValueError):
        return 1
    return max(1, min(span, limit))


def _html_text(tag: Tag) -> str:
    for dropped in tag.find_all(_HTML_DROP):
        dropped.decompose()
    for comment in tag.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    return tag.get_text(" ")


def _html_fragment_text(fragment: str) -> str:
    """The visible text of an HTML snippet, such as a raw HTML block in Markdown."""
    return _html_text(BeautifulSoup(fragment, "html.parser"))
