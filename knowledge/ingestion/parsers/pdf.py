"""PDF: one section per page, headed by the outline (bookmarks) where the PDF has one."""

from __future__ import annotations

import io
from collections.abc import Iterator

from pypdf import Configuration, PasswordType, PdfReader, apply_configuration
from pypdf.errors import DependencyError, LimitReachedError

from knowledge.ingestion.parsers.base import (
    HEADING_SEPARATOR,
    ParsedDocument,
    ParseError,
    Section,
    _clean_line,
    _clean_title,
    _describe,
    clean_text,
)

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


def parse(data: bytes, *, max_unpacked_bytes: int, max_xml_bytes: int) -> ParsedDocument:
    """The unpacking limits do not apply: PYPDF_LIMITS caps every stream's decoding."""
    # pypdf raises a wide range of exception types on malformed input (KeyError,
    # AttributeError, struct errors, ...); any of them means the file is damaged.
    try:
        with apply_configuration(PYPDF_LIMITS):
            reader = PdfReader(io.BytesIO(data), strict=False)
            _unlock_pdf(reader)
            pages = [page.extract_text() or "" for page in reader.pages]
            headings = _pdf_page_headings(reader, page_count=len(pages))
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
    if not pages:
        raise ParseError("The PDF has no pages.")
    sections = [
        Section(text=clean_text(text), heading=heading, page=number)
        for number, (text, heading) in enumerate(zip(pages, headings, strict=True), start=1)
    ]
    if not any(section.text for section in sections):
        raise ParseError(
            "The PDF has no extractable text (it looks scanned); "
            "scanned documents need OCR, which is not supported."
        )
    return ParsedDocument(sections=sections, title=title)


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
