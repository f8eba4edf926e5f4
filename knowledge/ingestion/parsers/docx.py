"""DOCX: the body's paragraphs and tables in order, sectioned by Title and Heading styles."""

from __future__ import annotations

import io
import re
import zipfile

# Absolute imports: this is python-docx, not this module.
import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table

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


def parse(data: bytes, *, max_unpacked_bytes: int) -> ParsedDocument:
    _check_zip(data, max_unpacked_bytes=max_unpacked_bytes)
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
    except Exception as exc:
        raise ParseError(
            f"The DOCX file is damaged and could not be read ({_describe(exc)})."
        ) from exc
    title = _clean_title(core_title) or _clean_title(first_title)
    return ParsedDocument(sections=builder.sections(), title=title)


def _check_zip(data: bytes, *, max_unpacked_bytes: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ParseError("The DOCX file is not a valid Word document (not a zip archive).") from exc
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


def _walk_docx(document, builder: _SectionBuilder) -> str | None:
    """Feed the body's paragraphs and tables, in document order; return a title candidate."""
    title = None
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            builder.table(_docx_table_rows(block))
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


def _docx_table_rows(table) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            # A horizontally merged cell is returned once per grid column it spans.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text)
        rows.append(cells)
    return rows
