"""Render the demo sources (a small Markdown subset) as PDF, DOCX, HTML, Markdown or text.

The subset: ATX headings (#, ##, ###), paragraphs, "- " bullets and pipe tables. Output is
deterministic: the same source gives the same bytes on every call.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import zipfile
from dataclasses import dataclass

FIXED_DATE = dt.datetime(2024, 11, 4, 9, 0, 0, tzinfo=dt.UTC)
AUTHOR = "Veluna Air"


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullet:
    text: str


@dataclass(frozen=True)
class Table:
    rows: list[list[str]]  # the first row is the header


Block = Heading | Paragraph | Bullet | Table

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def parse_blocks(source: str) -> list[Block]:
    blocks: list[Block] = []
    paragraph: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if paragraph:
            blocks.append(Paragraph(" ".join(paragraph)))
            paragraph.clear()
        if table:
            blocks.append(Table([row[:] for row in table]))
            table.clear()

    for raw in source.splitlines():
        line = raw.strip()
        if not line:
            flush()
        elif match := _HEADING.match(line):
            flush()
            blocks.append(Heading(len(match.group(1)), match.group(2)))
        elif line.startswith("|"):
            if paragraph:
                flush()
            if not _TABLE_RULE.match(line):
                table.append([cell.strip() for cell in line.strip("|").split("|")])
        elif line.startswith("- "):
            flush()
            blocks.append(Bullet(line[2:].strip()))
        elif table:
            flush()
            paragraph.append(line)
        else:
            paragraph.append(line)
    flush()
    return blocks


def document_title(blocks: list[Block]) -> str:
    for block in blocks:
        if isinstance(block, Heading) and block.level == 1:
            return block.text
    raise ValueError("A demo source needs a '# Title' line.")


# --- PDF ---------------------------------------------------------------------------------

# The PDF core fonts are Latin-1 only; embedding a Unicode font would mean shipping one.
_LATIN1_SUBSTITUTES = str.maketrans(
    {
        "€": "EUR ",
        "–": "-",
        "—": "-",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "…": "...",
        "≥": ">=",
        "≤": "<=",
        "→": "->",
        "•": "-",
    }
)


def _latin1(text: str) -> str:
    text = text.translate(_LATIN1_SUBSTITUTES).replace("EUR  ", "EUR ")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"Cannot render {text[exc.start : exc.end]!r} in a PDF core font."
        ) from exc
    return text


def render_pdf(blocks: list[Block], *, title: str) -> bytes:
    """A4 pages in Helvetica; every level-2 heading starts a new page and every heading
    is an outline (bookmark) entry, so page headings survive extraction."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(_latin1(title))
    pdf.set_author(AUTHOR)
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    for index, block in enumerate(blocks):
        if isinstance(block, Heading):
            if block.level == 2 and index > 1:
                pdf.add_page()
            pdf.start_section(_latin1(block.text), level=block.level - 1)
            pdf.set_font("Helvetica", "B", {1: 18, 2: 14}.get(block.level, 12))
            pdf.multi_cell(0, 8, _latin1(block.text), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif isinstance(block, Table):
            pdf.set_font("Helvetica", size=9)
            with pdf.table(first_row_as_headings=True, line_height=5.5) as table:
                for row in block.rows:
                    cells = table.row()
                    for cell in row:
                        cells.cell(_latin1(cell))
            pdf.ln(3)
        else:
            prefix = "- " if isinstance(block, Bullet) else ""
            pdf.set_font("Helvetica", size=10.5)
            pdf.multi_cell(0, 5.5, _latin1(prefix + block.text), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2.5)
    return bytes(pdf.output())


# --- DOCX --------------------------------------------------------------------------------


def render_docx(blocks: list[Block], *, title: str) -> bytes:
    import docx

    document = docx.Document()
    properties = document.core_properties
    properties.title = title
    properties.author = AUTHOR
    properties.last_modified_by = AUTHOR
    properties.created = FIXED_DATE.replace(tzinfo=None)
    properties.modified = FIXED_DATE.replace(tzinfo=None)
    properties.revision = 1
    for block in blocks:
        if isinstance(block, Heading):
            document.add_heading(block.text, level=0 if block.level == 1 else block.level - 1)
        elif isinstance(block, Bullet):
            document.add_paragraph(block.text, style="List Bullet")
        elif isinstance(block, Table):
            table = document.add_table(rows=len(block.rows), cols=len(block.rows[0]))
            table.style = "Table Grid"
            for row, values in zip(table.rows, block.rows, strict=True):
                for cell, value in zip(row.cells, values, strict=False):
                    cell.text = value
        else:
            document.add_paragraph(block.text)
    buffer = io.BytesIO()
    document.save(buffer)
    return normalise_zip(buffer.getvalue())


def normalise_zip(data: bytes) -> bytes:
    """The same archive with fixed member timestamps (zipfile stamps the current time)."""
    output = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for member in source.infolist():
            info = zipfile.ZipInfo(member.filename, date_time=FIXED_DATE.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, source.read(member.filename))
    return output.getvalue()


# --- HTML, Markdown, text ----------------------------------------------------------------

_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #999; padding: .25rem; }}
</style>
</head>
<body>
<nav><a href="/intranet/">Veluna Air intranet</a></nav>
<main>
{body}
</main>
<script>
window.velunaAnalytics && window.velunaAnalytics.track("page_view");
</script>
</body>
</html>
"""


def render_html(blocks: list[Block], *, title: str) -> bytes:
    parts: list[str] = []
    in_list = False
    for block in blocks:
        if in_list and not isinstance(block, Bullet):
            parts.append("</ul>")
            in_list = False
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Bullet):
            if not in_list:
                parts.append("<ul>")
                in_list = True
            parts.append(f"  <li>{html.escape(block.text)}</li>")
        elif isinstance(block, Table):
            parts.append(_html_table(block))
        else:
            parts.append(f"<p>{html.escape(block.text)}</p>")
    if in_list:
        parts.append("</ul>")
    page = _HTML_PAGE.format(title=html.escape(title), body="\n".join(parts))
    return page.encode("utf-8")


def _html_table(table: Table) -> str:
    header, *rows = table.rows
    lines = ["<table>", "  <tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"]
    for row in rows:
        lines.append("  <tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def render_text(blocks: list[Block], *, encoding: str = "utf-8") -> bytes:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            underline = "=" if block.level == 1 else "-"
            parts.append(f"{block.text}\n{underline * len(block.text)}")
        elif isinstance(block, Bullet):
            parts.append(f"  * {block.text}")
        elif isinstance(block, Table):
            parts.append("\n".join(" | ".join(row) for row in block.rows))
        else:
            parts.append(block.text)
    text = "\n\n".join(parts) + "\n"
    return text.replace("\n", "\r\n").encode(encoding)
