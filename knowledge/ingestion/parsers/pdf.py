"""PDF: one section per page, headed by the outline (bookmarks) where the PDF has one;
tables as header and rows.

pypdf opens the file: it tells encrypted and damaged files apart, reads the outline and
the title, and decodes every page's content within PYPDF_LIMITS before anything else
reads it. pdfplumber (pdfminer) then reads each page's text and tables by position, see
pdf_tables; a page it cannot read falls back to pypdf's text, without tables.
bench/pdf_tables.py measured the choice: pdfplumber got every table row of the test and
demo PDFs right where pypdf's layout mode did not (docs/benchmarks.md, "PDF tables").
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pdfplumber
from pypdf import Configuration, PasswordType, PdfReader, apply_configuration
from pypdf.errors import DependencyError, LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

from knowledge.ingestion.parsers.base import (
    HEADING_SEPARATOR,
    ParsedDocument,
    ParseError,
    Section,
    _clean_line,
    _clean_title,
    _describe,
    clean_text,
    table_text,
)
from knowledge.ingestion.parsers.pdf_tables import PageTable, page_blocks

logger = logging.getLogger(__name__)
# pdfminer logs a warning for each oddity of a damaged file; what matters reaches the admin
# as the document's error.
logging.getLogger("pdfminer").setLevel(logging.ERROR)

# pypdf's own resource limits, stated here so that an upgrade cannot quietly loosen them.
# A decoded stream that text extraction reads (page content, forms, fonts, CMaps) is parsed
# in pure Python at well under 1 MB/s, so one larger than this could not finish within
# INGEST_PARSE_TIMEOUT_SECONDS anyway: refusing it at once says why. Images are never
# decoded for text, and pypdf must not run an external decoder (jbig2dec) on an upload.
PYPDF_MAX_DECODED_STREAM_BYTES = 32 * 1024 * 1024
PYPDF_LIMITS = Configuration(
    maximum_declared_stream_length=75_000_000,
    array_based_stream_maximum_output_length=PYPDF_MAX_DECODED_STREAM_BYTES,
    zlib_maximum_output_length=PYPDF_MAX_DECODED_STREAM_BYTES,
    lzw_maximum_output_length=PYPDF_MAX_DECODED_STREAM_BYTES,
    run_length_maximum_output_length=PYPDF_MAX_DECODED_STREAM_BYTES,
    brotli_maximum_output_length=PYPDF_MAX_DECODED_STREAM_BYTES,
    jbig2_maximum_output_length=PYPDF_MAX_DECODED_STREAM_BYTES,
    stream_decoding_work_maximum_length=4 * PYPDF_MAX_DECODED_STREAM_BYTES,
    jbig2dec_binary=None,
)
# pdfplumber reads a page about 8 times slower than pypdf (55-65 ms for a page of prose and
# two tables on this project's 2-core machine, bench/pdf_tables.py). Past this much time on one
# file the remaining pages are read by pypdf, without tables, so that a long, dense PDF
# still parses within INGEST_PARSE_TIMEOUT_SECONDS (120 s by default) instead of failing.
PDFPLUMBER_SECONDS = 45
# Text between a table and the page break that still lets the table run on to the next page.
PAGE_FURNITURE_CHARS = 120


def parse(data: bytes, *, max_unpacked_bytes: int, max_xml_bytes: int) -> ParsedDocument:
    """The unpacking limits do not apply: PYPDF_LIMITS caps every stream's decoding."""
    # pypdf raises a wide range of exception types on malformed input (KeyError,
    # AttributeError, struct errors, ...); any of them means the file is damaged.
    try:
        with apply_configuration(PYPDF_LIMITS):
            reader = PdfReader(io.BytesIO(data), strict=False)
            _unlock_pdf(reader)
            page_count = len(reader.pages)
            _decode_page_streams(reader)
            headings = _pdf_page_headings(reader, page_count=page_count)
            title = _pdf_title(reader)
    except ParseError:
        raise
    except DependencyError as exc:
        raise ParseError(
            "The PDF uses an encryption method this server cannot decrypt; "
            "upload an unencrypted copy."
        ) from exc
    except LimitReachedError as exc:
        raise ParseError(
            "The PDF contains a stream that expands beyond the safety limit; refusing to read it."
        ) from exc
    except MemoryError:
        raise  # the sandbox reports it as the memory bound, not as a damaged file
    except Exception as exc:
        raise ParseError(f"The PDF is damaged and could not be read ({_describe(exc)}).") from exc
    if not page_count:
        raise ParseError("The PDF has no pages.")
    pages = _carry_table_headers(_page_blocks(data, reader, page_count=page_count))
    sections = [
        Section(text=_page_text(blocks), heading=heading, page=number)
        for number, (blocks, heading) in enumerate(zip(pages, headings, strict=True), start=1)
    ]
    if not any(section.text for section in sections):
        raise ParseError(
            "The PDF has no extractable text (it looks scanned); "
            "scanned documents need OCR, which is not supported."
        )
    return ParsedDocument(sections=sections, title=title)


def _decode_page_streams(reader) -> None:
    """Decode what reading a page's text decodes (its content, the forms it draws, its
    fonts and their Unicode maps) within PYPDF_LIMITS, so that pdfminer, which has no such
    limits, never meets a stream that expands past them."""
    seen: set[object] = set()
    for page in reader.pages:
        page.get_contents()  # ContentStream decodes (and joins) the page's streams
        pending = [page.get("/Resources")]
        while pending:
            resources = _resolved(pending.pop())
            if not isinstance(resources, DictionaryObject):
                continue
            for kind in ("/XObject", "/Font"):
                entries = _resolved(resources.get(kind))
                if not isinstance(entries, DictionaryObject):
                    continue
                for value in entries.values():
                    key = getattr(value, "idnum", None) or id(value)
                    if key in seen:
                        continue
                    seen.add(key)
                    obj = _resolved(value)
                    if kind == "/XObject":
                        if isinstance(obj, StreamObject) and obj.get("/Subtype") == "/Form":
                            obj.get_data()
                            pending.append(obj.get("/Resources"))
                    elif isinstance(obj, DictionaryObject):
                        _decode_font_streams(obj)


def _decode_font_streams(font: DictionaryObject) -> None:
    fonts = [font]
    descendants = _resolved(font.get("/DescendantFonts"))
    if isinstance(descendants, ArrayObject):
        fonts.extend(f for f in map(_resolved, descendants) if isinstance(f, DictionaryObject))
    for each in fonts:
        streams = [each.get("/ToUnicode")]
        descriptor = _resolved(each.get("/FontDescriptor"))
        if isinstance(descriptor, DictionaryObject):
            streams.extend(
                descriptor.get(name) for name in ("/FontFile", "/FontFile2", "/FontFile3")
            )
        for stream in map(_resolved, streams):
            if isinstance(stream, StreamObject):
                stream.get_data()


def _resolved(obj):
    return obj.get_object() if obj is not None else None


def _page_blocks(data: bytes, reader, *, page_count: int) -> list[list[str | PageTable]]:
    """Each page's text runs and tables, by pdfplumber; pypdf's text where it fails, and
    for the pages left once pdfplumber has spent PDFPLUMBER_SECONDS on the file."""
    pages: list[list[str | PageTable] | None] = [None] * page_count
    deadline = time.monotonic() + PDFPLUMBER_SECONDS
    try:
        with pdfplumber.open(io.BytesIO(data), password="") as pdf:
            if len(pdf.pages) == page_count:
                for index, page in enumerate(pdf.pages):
                    if time.monotonic() > deadline:
                        logger.info("pdfplumber time spent; pages from %s on by pypdf", index + 1)
                        break
                    try:
                        pages[index] = page_blocks(page)
                    except MemoryError:
                        raise
                    except Exception as exc:
                        logger.info("pdfplumber failed on page %s: %s", index + 1, _describe(exc))
                    finally:
                        page.close()
    except MemoryError:
        raise
    except Exception as exc:
        logger.info("pdfplumber could not open the PDF: %s", _describe(exc))
    missing = [index for index, blocks in enumerate(pages) if blocks is None]
    if missing:
        try:
            with apply_configuration(PYPDF_LIMITS):
                for index in missing:
                    pages[index] = [reader.pages[index].extract_text() or ""]
        except MemoryError:
            raise
        except Exception as exc:
            raise ParseError(
                f"The PDF is damaged and could not be read ({_describe(exc)})."
            ) from exc
    return pages


def _carry_table_headers(pages: list[list[str | PageTable]]) -> list[list[str | PageTable]]:
    """A table that runs on from one page to the next without repeating its header gets
    the header again: it is the first table on the page, drawn in the same columns as the
    last table of the page before, and its first row is not set as a header."""
    previous: PageTable | None = None
    carried = []
    for blocks in pages:
        blocks = list(blocks)
        first = next((i for i, b in enumerate(blocks) if isinstance(b, PageTable)), None)
        if previous is not None and first is not None and _only_page_furniture(blocks[:first]):
            table = blocks[first]
            header = previous.rows[: previous.header_rows]
            if (
                _same_columns(table, previous)
                and not table.header_styled
                and table.rows[: len(header)] != header
            ):
                blocks[first] = PageTable(
                    rows=[*header, *table.rows],
                    column_starts=table.column_starts,
                    header_styled=previous.header_styled,
                    header_rows=previous.header_rows,
                )
        last = next(
            (i for i in range(len(blocks) - 1, -1, -1) if isinstance(blocks[i], PageTable)), None
        )
        ends_with_table = last is not None and _only_page_furniture(blocks[last + 1 :])
        previous = blocks[last] if ends_with_table else None
        carried.append(blocks)
    return carried


def _only_page_furniture(blocks: list[str | PageTable]) -> bool:
    """Nothing, or no more than a running header or footer (a line or two)."""
    text = " ".join(b for b in blocks if isinstance(b, str))
    return len(text.strip()) <= PAGE_FURNITURE_CHARS and not any(
        isinstance(b, PageTable) for b in blocks
    )


def _same_columns(a: PageTable, b: PageTable) -> bool:
    return len(a.column_starts) == len(b.column_starts) and all(
        abs(x - y) <= 3 for x, y in zip(a.column_starts, b.column_starts, strict=True)
    )


def _page_text(blocks: list[str | PageTable]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, PageTable):
            title_and_table = table_text(block.rows, header_rows=block.header_rows)
            parts.extend(part for part in title_and_table if part)
        elif text := clean_text(block):
            parts.append(text)
    return "\n\n".join(parts)


def _unlock_pdf(reader) -> None:
    if not reader.is_encrypted:
        return
    # Many "encrypted" PDFs only restrict printing or copying and open with an empty password.
    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise ParseError("The PDF is encrypted; upload an unencrypted copy.")


def _pdf_title(reader) -> str | None:
    metadata = reader.metadata
    title = _clean_title(str(metadata.title)) if metadata and metadata.title else None
    if title:
        return title
    first = next(_pdf_outline_entries(reader), None)
    return _clean_title(first[1][-1]) if first else None


def _pdf_outline_entries(reader) -> Iterator[tuple[int, list[str]]]:
    """(0-based page index, heading path) for each outline entry, in outline order."""

    def walk(items, parents: list[str]) -> Iterator[tuple[int, list[str]]]:
        last_path = parents
        for item in items:
            if isinstance(item, list):
                yield from walk(item, last_path)
                continue
            title = _clean_line(str(item.title or ""))
            if not title:
                continue
            last_path = [*parents, title]
            page_index = reader.get_destination_page_number(item)
            if page_index is not None and page_index >= 0:
                yield page_index, last_path

    try:
        entries = list(walk(reader.outline, []))
    except Exception:
        entries = []  # A broken outline is not worth failing the document over.
    yield from entries


def _pdf_page_headings(reader, *, page_count: int) -> list[str]:
    """For each page: the first outline heading on it, else the last one before it."""
    on_page: dict[int, list[list[str]]] = {}
    for page_index, path in _pdf_outline_entries(reader):
        on_page.setdefault(page_index, []).append(path)
    headings, current = [], []
    for index in range(page_count):
        paths = on_page.get(index)
        headings.append(HEADING_SEPARATOR.join(paths[0] if paths else current))
        current = paths[-1] if paths else current
    return headings
