"""DOCX: the body's paragraphs and tables in order, sectioned by Title and Heading styles."""

from __future__ import annotations

import io
import re
import zipfile
import zlib

# Absolute imports: this is python-docx, not this module.
import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from knowledge.ingestion.parsers.base import (
    ParsedDocument,
    ParseError,
    _clean_title,
    _describe,
    _megabytes,
    _SectionBuilder,
)

# A DOCX member that inflates more than this (and is large) is treated as a zip bomb: real
# Word XML compresses about 5-20:1.
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECK_MIN_BYTES = 1024 * 1024
MAX_ZIP_MEMBERS = 10_000
# python-docx parses every XML part whole with lxml, at a few hundred bytes per element; a
# 500-page manual holds a few hundred thousand. Counted before parsing (start tags), so a
# part made of tiny elements fails here rather than exhausting memory.
MAX_XML_ELEMENTS = 1_000_000
_READ_CHUNK = 1024 * 1024
# Word's own limit on a table's columns is 63; a larger span is not from Word.
MAX_GRID_SPAN = 64
# After an optional byte order mark and whitespace, an XML part starts with "<".
_XML_START = re.compile(rb"^(\xef\xbb\xbf|\xff\xfe|\xfe\xff)?[\x00\s]*<")
# What reading a damaged, encrypted or exotically compressed member raises.
_UNREADABLE_MEMBER = (
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
)


def parse(data: bytes, *, max_unpacked_bytes: int, max_xml_bytes: int) -> ParsedDocument:
    _check_zip(data, max_unpacked_bytes=max_unpacked_bytes, max_xml_bytes=max_xml_bytes)
    # python-docx reports malformed packages and XML through many exception types.
    try:
        document = docx.Document(io.BytesIO(data))
        builder = _SectionBuilder()
        first_title = _walk_docx(document, builder)
        core_title = document.core_properties.title
    except PackageNotFoundError as exc:
        raise ParseError(
            "The DOCX file is not a valid Word document (the zip has no Word document in it)."
        ) from exc
    except MemoryError:
        raise  # the sandbox reports it as the memory bound, not as a damaged file
    except Exception as exc:
        raise ParseError(
            f"The DOCX file is damaged and could not be read ({_describe(exc)})."
        ) from exc
    title = _clean_title(core_title) or _clean_title(first_title)
    return ParsedDocument(sections=builder.sections(), title=title)


def _check_zip(data: bytes, *, max_unpacked_bytes: int, max_xml_bytes: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            _check_members(members, max_unpacked_bytes=max_unpacked_bytes)
            try:
                _check_xml_parts(archive, members, max_xml_bytes=max_xml_bytes)
            except _UNREADABLE_MEMBER as exc:
                raise ParseError(
                    f"The DOCX file is damaged and could not be read ({_describe(exc)})."
                ) from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ParseError("The DOCX file is not a valid Word document (not a zip archive).") from exc


def _check_members(members: list[zipfile.ZipInfo], *, max_unpacked_bytes: int) -> None:
    if not any(member.filename == "[Content_Types].xml" for member in members):
        raise ParseError(
            "The DOCX file is not a valid Word document (the zip archive holds no Word content)."
        )
    if len(members) > MAX_ZIP_MEMBERS:
        raise ParseError(
            f"The DOCX contains {len(members)} files; refusing to open it (possible zip bomb)."
        )
    total = sum(member.file_size for member in members)
    if total > max_unpacked_bytes:
        raise ParseError(
            f"The DOCX expands to more than {_megabytes(max_unpacked_bytes)} when unpacked; "
            "refusing to open it (possible zip bomb)."
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise ParseError(
                f"The DOCX member {member.filename!r} is compressed {ratio:.0f}:1, far beyond "
                "what a Word document compresses; refusing to open it (possible zip bomb)."
            )


def _check_xml_parts(archive: zipfile.ZipFile, members, *, max_xml_bytes: int) -> None:
    """Bound what python-docx would parse: the unpacked XML and its element count.

    A part is XML by its content, not its name: the package may give any name an XML
    content type. Sizes are read, not taken from the zip directory.
    """
    xml_bytes = elements = 0
    for member in members:
        if member.is_dir():
            continue
        with archive.open(member) as stream:
            head = stream.read(64)
            if not _XML_START.match(head):
                continue
            tail = b""
            chunk = head
            while chunk:
                xml_bytes += len(chunk)
                if xml_bytes > max_xml_bytes:
                    raise ParseError(
                        f"The DOCX holds more than {_megabytes(max_xml_bytes)} of XML when "
                        "unpacked; refusing to parse it (possible XML bomb)."
                    )
                # Start tags, comments and processing instructions: "<" not followed by "/".
                elements += chunk.count(b"<") - (tail + chunk).count(b"</")
                tail = chunk[-1:]
                if elements > MAX_XML_ELEMENTS:
                    raise ParseError(
                        f"The DOCX holds more than {MAX_XML_ELEMENTS:,} XML elements; "
                        "refusing to parse it (possible XML bomb)."
                    )
                chunk = stream.read(_READ_CHUNK)


def _walk_docx(document, builder: _SectionBuilder) -> str | None:
    """Feed the body's paragraphs and tables, in document order; return a title candidate."""
    title = None
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows, header_rows = _docx_table_rows(block)
            builder.table(rows, header_rows=header_rows)
            continue
        style_name = _docx_style_name(block)
        text = block.text
        if style_name == "title":
            title = title or text
            builder.heading(level=0, text=text)
        elif level := _docx_heading_level(style_name):
            title = title or text
            builder.heading(level=level, text=text)
        else:
            builder.paragraph(text)
    return title


def _docx_style_name(paragraph) -> str:
    try:
        style = paragraph.style
    except Exception:
        return ""
    return (style.name or "").strip().lower() if style is not None else ""


def _docx_heading_level(style_name: str) -> int | None:
    match = re.fullmatch(r"heading ([1-9])", style_name)
    return int(match.group(1)) if match else None


def _docx_table_rows(table) -> tuple[list[list[str]], int]:
    """The table on its layout grid, and how many rows at its top are its header.

    A cell spanning columns (gridSpan) or rows (vMerge) is repeated in each slot it covers;
    grid columns a row skips (gridBefore) are empty slots. Read from the XML in one pass:
    python-docx's row.cells looks each merged cell up from the top of the table again.
    """
    rows: list[list[str]] = []
    header_rows = 0
    for tr in table._tbl.tr_lst:
        row = [""] * min(tr.grid_before, MAX_GRID_SPAN)
        above = rows[-1] if rows else []
        for tc in tr.tc_lst:
            span = max(1, min(tc.grid_span, MAX_GRID_SPAN))
            if tc.vMerge == "continue":
                start = len(row)
                row.extend(above[start + i] if start + i < len(above) else "" for i in range(span))
            else:
                row.extend([_docx_cell_text(tc, table)] * span)
        if header_rows == len(rows) and _docx_is_header_row(tr):
            header_rows += 1
        rows.append(row)
    if not header_rows:
        # Unmarked: a first row with a cell over several columns names them together with
        # the row below it ("Salary" over "Min | Mid | Max").
        first = table._tbl.tr_lst[0].tc_lst if rows else []
        spans = [tc.grid_span for tc in first]
        header_rows = 2 if len(rows) > 2 and len(spans) > 1 and max(spans) > 1 else 1
    return rows, header_rows


def _docx_cell_text(tc, table) -> str:
    """A cell's paragraphs and nested tables, as one line (a nested table's cells in order)."""
    parts = []
    for element in tc.iter(qn("w:p")):
        text = Paragraph(element, table).text
        if text.strip():
            parts.append(text)
    return " ".join(parts)


def _docx_is_header_row(tr) -> bool:
    """Marked "repeat as header row" in Word (w:tblHeader)."""
    for marker in tr.xpath("./w:trPr/w:tblHeader"):
        return marker.get(qn("w:val"), "true").lower() not in ("0", "false", "off")
    return False
